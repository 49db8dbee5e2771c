"""The encoder (torchvision's ResNet-18 without its classifier) and MLP heads."""

from __future__ import annotations

from typing import Tuple

import torchvision
from torch import nn

FEATURE_DIM = 512  # ResNet-18's pooled feature size


def resnet18_encoder(in_channels: int = 3, image_size: int = 32) -> Tuple[nn.Module, int]:
    """ResNet-18 with ``fc = Identity``, returning ``(encoder, feature_dim)``.

    Images of 32 px or less get the CIFAR stem (a 3x3 stride-1 first
    convolution and no max-pool; SimCLR appendix B.9), larger ones keep the
    ImageNet stem (7x7 stride 2 + max-pool; e.g. STL-10 at 96 px). The first
    convolution takes ``in_channels`` (1 for MNIST and digits).
    """
    net = torchvision.models.resnet18(weights=None)
    if image_size <= 32:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    net.fc = nn.Identity()
    return net, FEATURE_DIM


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` linear layers with BatchNorm + ReLU between them (the heads
    of SimCLR, BYOL, VICReg and Barlow Twins)."""
    blocks = []
    dim = in_dim
    for _ in range(layers - 1):
        blocks += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    blocks.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*blocks)
