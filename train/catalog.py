"""The datasets and methods, read from their recipes in ``train/recipes/`` (no torch).

A **dataset recipe** (``train/recipes/datasets/<name>.toml``) says how to load
the dataset (``[loader]``: the function and its arguments), the budget a run
on it starts from (``[budget]``), what its augmentations may do (``hflip``,
``crop_min_scale``), how tables name it, and optionally how a method's recipe
changes on it (``[methods.<method>]``, the same keys as the method's
``[training]`` and ``params``).

A **method recipe** (``train/recipes/methods/<name>.toml``) is the method's
published recipe with the source of every value: its class (``model``), the
trainer's optimisation settings it fills (``[training]``), its own
hyper-parameters (``[params.<name>]``: ``value``, ``check``, ``choices``,
``help``; ``kind = "run"`` for one that changes how a run computes, not what),
combinations it refuses (``[[conflicts]]``), and its two augmentation views
(``[views]``, or ``views_from`` another method). ``extends`` starts from
another method's recipe. The method owns these hyper-parameters: a run's
config holds them in ``Config.params``, checked here against the recipe
whatever they come from (a flag, a plan, a saved config).

The command line needs the names, the flags and the defaults before it
imports torch, so that ``--help`` and argument errors answer at once; the
classes and loaders are imported on first use.
"""

from __future__ import annotations

import argparse
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import checks

RECIPES = Path(__file__).resolve().parent / "recipes"
TYPES = {"int": int, "float": float, "bool": bool, "str": str}
#: Trainer settings a method recipe's ``[training]`` may fill (the run's flags win).
TRAINING_KEYS = ("optimizer", "lr", "weight_decay", "warmup_epochs", "bias_lr_scale")
BUDGET_KEYS = ("image_size", "epochs", "batch_size")


class RecipeError(ValueError):
    """A recipe file is malformed, or a value breaks a recipe's rule."""


def import_object(target: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _type_name(value: Any) -> Optional[str]:
    for name in ("bool", "int", "float", "str"):  # bool first: True is an int too
        if isinstance(value, TYPES[name]):
            return name
    return None


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of a method, as its recipe declares it."""

    name: str
    type: str  # "int", "float", "bool" or "str"
    default: Any  # None: unset (the method's behaviour without it)
    help: str = ""
    check: str = ""
    choices: Tuple[Any, ...] = ()
    kind: str = "training"  # "training": changes the trained weights; "run": where or how fast only
    metavar: Optional[str] = None
    aliases: Tuple[Tuple[str, Any], ...] = ()  # (flag, value it sets)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def parse(self) -> Callable[[Any], Any]:
        """The command line's parser of this value (also checks values from files)."""
        if self.choices:
            return self._choice
        parser = checks.RECIPE_CHECKS.get((self.type, self.check))
        if parser is None:
            raise RecipeError(f"hyper-parameter {self.name}: check {self.check!r} does not apply to a {self.type}")
        return parser

    def _choice(self, value):
        if value not in self.choices:
            raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def validate(self, value: Any, method: str) -> Any:
        """``value`` checked (None when the parameter may be unset); raises :class:`RecipeError`."""
        if value is None and self.default is None:
            return None
        try:
            return self.parse(value)
        except argparse.ArgumentTypeError as exc:
            raise RecipeError(f"{self.name} of {method}: {exc}") from None


@dataclass(frozen=True)
class Conflict:
    """Values of a method's hyper-parameters that cannot go together."""

    when: Tuple[Tuple[str, Any], ...]  # (name, value); the value "set" means any value but None
    reason: str

    def holds(self, params: Mapping[str, Any]) -> bool:
        return all(params.get(k) is not None if v == "set" else params.get(k) == v for k, v in self.when)

    def text(self) -> str:
        parts = [("--" + k.replace("_", "-")) + ("" if v == "set" else f" {v}") for k, v in self.when]
        return f"{' with '.join(parts)}: {self.reason}"


@dataclass(frozen=True)
class MethodRecipe:
    """A method's recipe (``train/recipes/methods/<name>.toml``)."""

    name: str
    title: str
    model: str  # "module:Class"
    order: int
    training: Dict[str, Any]
    params: Tuple[Param, ...]
    views: Dict[str, Any]  # {"small": view(s), "large": view(s)}
    conflicts: Tuple[Conflict, ...] = ()
    path: Optional[Path] = None

    @property
    def param_names(self) -> Tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def defaults(self) -> Dict[str, Any]:
        """Every hyper-parameter at the recipe's value."""
        return {p.name: p.default for p in self.params}

    def validate(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """``params`` (a value for each of this method's hyper-parameters)
        checked against the recipe; raises :class:`RecipeError`."""
        unknown = [k for k in params if k not in self.param_names]
        if unknown:
            raise RecipeError(f"{self.name} has no hyper-parameter {', '.join(unknown)} "
                              f"(its hyper-parameters: {', '.join(self.param_names)})")
        missing = [p.name for p in self.params if p.name not in params]
        if missing:
            raise RecipeError(f"{self.name}: no value for {', '.join(missing)}")
        out = {p.name: p.validate(params[p.name], self.name) for p in self.params}
        for conflict in self.conflicts:
            if conflict.holds(out):
                raise RecipeError(conflict.text())
        return out

    def model_class(self):
        return import_object(self.model)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's recipe (``train/recipes/datasets/<name>.toml``): how to load it, the defaults of a run on it."""

    loader: str  # "module:function", called with loader_args and the run's data settings
    image_size: int  # side of the images the encoder sees
    epochs: int
    batch_size: int
    hflip: bool = True  # mirror images are still the same class
    crop_min_scale: float = 0.08  # smallest random-resized-crop area fraction
    description: str = ""
    loader_args: Dict[str, Any] = field(default_factory=dict)
    table_note: str = ""  # what a results table on this dataset shows ({epochs}: its pretraining epochs)
    title: str = ""  # how tables name it
    methods: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # method -> recipe changes on this dataset
    name: str = ""
    path: Optional[Path] = None

    def load(self, **kwargs):
        return import_object(self.loader)(**self.loader_args, **kwargs)


# ---------------------------------------------------------------------------------------------- reading


def _read(path: Path) -> Dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc})") from exc


def _take(table: Dict[str, Any], key: str, kind, where: str, default: Any = ...):
    if key not in table:
        if default is ...:
            raise RecipeError(f"{where}: missing '{key}'")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecipeError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _param(name: str, raw: Dict[str, Any], where: str) -> Param:
    where = f"{where} [params.{name}]"
    known = {"value", "type", "check", "choices", "help", "kind", "metavar", "aliases"}
    unknown = set(raw) - known
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    value = raw.get("value")
    kind = raw.get("type", _type_name(value))
    if kind not in TYPES:
        raise RecipeError(f"{where}: give a value, or a type (one of {', '.join(TYPES)}) for one without")
    if value is not None and _type_name(value) != kind and not (kind == "float" and _type_name(value) == "int"):
        raise RecipeError(f"{where}: value {value!r} is not a {kind}")
    param = Param(name=name, type=kind, default=float(value) if kind == "float" and value is not None else value,
                  help=_take(raw, "help", str, where, ""), check=_take(raw, "check", str, where, ""),
                  choices=tuple(_take(raw, "choices", list, where, [])),
                  kind=_take(raw, "kind", str, where, "training"), metavar=raw.get("metavar"),
                  aliases=tuple(_take(raw, "aliases", dict, where, {}).items()))
    if param.kind not in ("training", "run"):
        raise RecipeError(f"{where}: kind must be 'training' or 'run', got {param.kind!r}")
    try:
        param.parse  # noqa: B018 - an unknown check is an error now, not at the first flag
    except RecipeError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    if value is not None:
        param.validate(value, where)
    return param


def _views(raw: Dict[str, Any], where: str) -> Dict[str, Any]:
    if set(raw) != {"small", "large"}:
        raise RecipeError(f"{where} [views]: give 'small' (images of 32 px or less) and 'large', got {sorted(raw)}")
    for size, value in raw.items():
        views = value if isinstance(value, list) else [value]
        if len(views) not in (1, 2) or not all(isinstance(v, dict) for v in views):
            raise RecipeError(f"{where} [views] {size}: one table (both views) or a list of two, got {value!r}")
    return dict(raw)


def read_method_recipe(path: Path, recipes: Mapping[str, Dict[str, Any]]) -> MethodRecipe:
    """The recipe at ``path``; ``recipes`` holds the raw tables of every method (for ``extends``)."""
    name = path.stem
    raw = recipes[name]
    where = str(path)
    known = {"title", "model", "order", "extends", "views_from", "training", "params", "views", "conflicts"}
    unknown = set(raw) - known
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    chain, parent = [raw], raw.get("extends")
    while parent is not None:
        if parent not in recipes or parent == name or len(chain) > len(recipes):
            raise RecipeError(f"{where}: extends {parent!r}, which is no other method's recipe")
        chain.insert(0, recipes[parent])
        parent = recipes[parent].get("extends")
    training: Dict[str, Any] = {}
    params: Dict[str, Dict[str, Any]] = {}
    views, conflicts = None, []
    for table in chain:
        training.update(_take(table, "training", dict, where, {}))
        for key, value in _take(table, "params", dict, where, {}).items():
            params[key] = value
        if "views" in table:
            views = table["views"]
        elif "views_from" in table:
            source = table["views_from"]
            if source not in recipes or "views" not in recipes[source]:
                raise RecipeError(f"{where}: views_from {source!r} names no recipe with [views]")
            views = recipes[source]["views"]
        conflicts += _take(table, "conflicts", list, where, [])
    bad = [k for k in training if k not in TRAINING_KEYS]
    if bad:
        raise RecipeError(f"{where} [training]: {', '.join(bad)} cannot be set by a recipe (it may set "
                          f"{', '.join(TRAINING_KEYS)})")
    if views is None:
        raise RecipeError(f"{where}: no [views] (or views_from another method)")
    declared = tuple(_param(k, v, where) for k, v in params.items())
    names = {p.name for p in declared}
    parsed_conflicts = []
    for c in conflicts:
        when = _take(c, "when", dict, f"{where} [[conflicts]]")
        if set(when) - names:
            raise RecipeError(f"{where} [[conflicts]]: {sorted(set(when) - names)} are not its hyper-parameters")
        parsed_conflicts.append(Conflict(tuple(when.items()), _take(c, "reason", str, f"{where} [[conflicts]]")))
    return MethodRecipe(name=name, title=_take(raw, "title", str, where), model=_take(raw, "model", str, where),
                        order=_take(raw, "order", int, where), training=training, params=declared,
                        views=_views(views, where), conflicts=tuple(parsed_conflicts), path=path)


def read_dataset_recipe(path: Path) -> DatasetSpec:
    raw = _read(path)
    where = str(path)
    known = {"title", "description", "hflip", "crop_min_scale", "table_note", "loader", "budget", "methods"}
    unknown = set(raw) - known
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    loader = dict(_take(raw, "loader", dict, where))
    function = _take(loader, "function", str, f"{where} [loader]")
    del loader["function"]
    budget = _take(raw, "budget", dict, where)
    for key in BUDGET_KEYS:
        value = _take(budget, key, int, f"{where} [budget]")
        if value < 1:
            raise RecipeError(f"{where} [budget]: {key} must be a positive integer, got {value}")
    methods = _take(raw, "methods", dict, where, {})
    return DatasetSpec(loader=function, loader_args=loader, image_size=budget["image_size"], epochs=budget["epochs"],
                       batch_size=budget["batch_size"], hflip=_take(raw, "hflip", bool, where, True),
                       crop_min_scale=float(_take(raw, "crop_min_scale", (int, float), where, 0.08)),
                       description=_take(raw, "description", str, where, ""),
                       table_note=_take(raw, "table_note", str, where, ""),
                       title=_take(raw, "title", str, where), methods={k: dict(v) for k, v in methods.items()},
                       name=path.stem, path=path)


def read_recipes(root: Path = RECIPES) -> Tuple[Dict[str, DatasetSpec], Dict[str, MethodRecipe]]:
    """``(datasets, methods)`` from the recipe folder; methods in their ``order``."""
    datasets = {p.stem: read_dataset_recipe(p) for p in sorted((root / "datasets").glob("*.toml"))}
    paths = sorted((root / "methods").glob("*.toml"))
    raw = {p.stem: _read(p) for p in paths}
    methods = [read_method_recipe(p, raw) for p in paths]
    methods.sort(key=lambda m: (m.order, m.name))
    by_name = {m.name: m for m in methods}
    _check_shared_params(by_name)
    for spec in datasets.values():
        for method, changes in spec.methods.items():
            if method not in by_name:
                raise RecipeError(f"{spec.path} [methods.{method}]: no method {method!r}")
            recipe = by_name[method]
            for key, value in changes.items():
                if key in recipe.param_names:
                    recipe.param(key).validate(value, method)
                elif key not in TRAINING_KEYS:
                    raise RecipeError(f"{spec.path} [methods.{method}]: {key} is neither one of its "
                                      f"hyper-parameters nor a training setting ({', '.join(TRAINING_KEYS)})")
    return datasets, by_name


def _check_shared_params(methods: Mapping[str, MethodRecipe]) -> None:
    """A flag is one setting: methods sharing a hyper-parameter's name must check and use it alike."""
    seen: Dict[str, Tuple[str, Param]] = {}
    for m in methods.values():
        for p in m.params:
            if p.name in seen:
                other, q = seen[p.name]
                if (p.type, p.check, p.choices, p.kind) != (q.type, q.check, q.choices, q.kind):
                    raise RecipeError(f"{m.path}: {p.name} is declared unlike {other}'s (type, check, choices, "
                                      "kind must agree: one flag sets both)")
            else:
                seen[p.name] = (m.name, p)


#: ``{name: DatasetSpec}`` and ``{name: MethodRecipe}``, read from ``train/recipes/`` (methods in their ``order``).
DATASETS, METHOD_RECIPES = read_recipes()
METHOD_NAMES: Tuple[str, ...] = tuple(METHOD_RECIPES)


def all_params() -> Dict[str, List[Tuple[str, Param]]]:
    """``{name: [(method, Param), ...]}`` over every method, in method order."""
    out: Dict[str, List[Tuple[str, Param]]] = {}
    for m in METHOD_RECIPES.values():
        for p in m.params:
            out.setdefault(p.name, []).append((m.name, p))
    return out


def param_kind(name: str) -> str:
    """``"training"`` or ``"run"`` for a hyper-parameter of any method."""
    return all_params()[name][0][1].kind


def recipe_params(method: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The hyper-parameters of ``method`` by its recipe, changed by ``dataset``'s recipe if given."""
    recipe = METHOD_RECIPES[method]
    params = recipe.defaults
    if dataset is not None:
        changes = DATASETS[dataset].methods.get(method, {})
        params.update({k: v for k, v in changes.items() if k in params})
    return params


def recipe_training(method: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The training settings ``method``'s recipe fills, changed by ``dataset``'s recipe if given."""
    training = dict(METHOD_RECIPES[method].training)
    if dataset is not None:
        changes = DATASETS[dataset].methods.get(method, {})
        training.update({k: v for k, v in changes.items() if k in TRAINING_KEYS})
    return training


def users_of(name: str) -> Sequence[str]:
    """The methods that take the hyper-parameter ``name``."""
    return [m for m, _ in all_params().get(name, [])]
