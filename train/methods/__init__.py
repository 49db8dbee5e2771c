"""Method registry: ``METHODS[name]`` is the class training that method
(the names, their order and the classes come from the methods' recipes,
:data:`train.catalog.METHOD_RECIPES`)."""

from __future__ import annotations

from typing import Dict, Type

from ..catalog import METHOD_RECIPES
from .base import Method

METHODS: Dict[str, Type[Method]] = {name: recipe.model_class() for name, recipe in METHOD_RECIPES.items()}
_misnamed = {k: m.name for k, m in METHODS.items() if m.name != k}
if _misnamed:
    raise ImportError(f"a method recipe names a class under another name: {_misnamed}")

__all__ = ["METHODS", "Method"]
