"""The project's experiments, built on the trainer's public API (``import train``) only.

``experiments.paper``: the SinSim paper's experiments (``python train/run.py
--protocol paper``) and the pre-registered campaign that runs them at a real
budget (``python train/run.py --protocol campaign``).
"""
