"""The SinSim training protocol: self-supervised pretraining of a ResNet-18
with SinSim or a baseline (SimCLR, BYOL, VICReg, Barlow Twins), then frozen-
feature evaluation (linear probe, 2-layer MLP probe, kNN).

Entry point: ``python train/run.py --help``. The library (``sinsim_ext``)
never imports this package.
"""
