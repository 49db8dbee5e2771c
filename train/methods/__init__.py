"""Method registry: ``METHODS[name]`` is the class training that method
(the names and their order come from :data:`train.catalog.METHOD_CLASSES`)."""

from __future__ import annotations

from typing import Dict, Type

from ..catalog import METHOD_CLASSES, import_object
from .base import Method

METHODS: Dict[str, Type[Method]] = {name: import_object(target) for name, target in METHOD_CLASSES.items()}
_misnamed = {k: m.name for k, m in METHODS.items() if m.name != k}
if _misnamed:
    raise ImportError(f"train.catalog.METHOD_CLASSES names a class under another name: {_misnamed}")

__all__ = ["METHODS", "Method"]
