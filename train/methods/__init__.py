"""Method registry: ``METHODS[name]`` is the class training that method."""

from __future__ import annotations

from typing import Dict, Type

from .barlow import BarlowTwins
from .base import Method
from .byol import BYOL
from .simclr import SimCLR
from .sinsim import SinSim
from .vicreg import VICReg

METHODS: Dict[str, Type[Method]] = {m.name: m for m in (SinSim, SimCLR, BYOL, VICReg, BarlowTwins)}

__all__ = ["METHODS", "Method"]
