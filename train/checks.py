"""What a setting's value must be: parsers for the command line that also check values from files.

Each function takes the text of a flag (or a value read from a recipe, a plan
or a saved config) and returns the value, or raises
:class:`argparse.ArgumentTypeError` whose message says what was expected
(argparse prefixes it with the flag's name). No torch here: the command line
is parsed before torch is imported.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, Tuple


def _typed(cast, predicate, what):
    def parse(text):
        if isinstance(text, bool):  # True is not the number 1 here
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        try:
            value = cast(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if cast is int and isinstance(text, float) and text != value:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if not predicate(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
nonneg_int = _typed(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _typed(float, lambda v: v > 0 and v < float("inf"), "a positive number")
nonneg_float = _typed(float, lambda v: 0 <= v < float("inf"), "a non-negative number")
unit_interval = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
any_float = _typed(float, lambda v: v == v, "a number")
any_int = _typed(int, lambda v: True, "an integer")
# NT-Xent with one image has no negatives (the loss is exactly 0), and the
# other methods normalise over the batch: every method needs two or more.
at_least_two = _typed(int, lambda v: v >= 2, "an integer >= 2 (a self-supervised batch compares two or more images)")
# The MLP probe's BatchNorm needs two images, a probe two classes; uniformity compares pairs of points.
probe_images = _typed(int, lambda v: v >= 2, "an integer >= 2 (the probes train on two or more labelled images)")
geometry_points = _typed(int, lambda v: v >= 2, "an integer >= 2 (the geometry compares pairs of points)")


def cpu_threads(text: str) -> str:
    """``auto`` or a positive number of threads (kept as text: the config is JSON)."""
    text = str(text)
    if text == "auto" or (text.isdigit() and int(text) > 0):
        return text if text == "auto" else str(int(text))
    raise argparse.ArgumentTypeError(f"{text!r} is not auto or a positive integer")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a text")


#: A recipe's ``check`` for a hyper-parameter of each type: ``(type, check) -> parser``.
RECIPE_CHECKS: Dict[Tuple[str, str], Callable] = {
    ("int", "positive"): positive_int,
    ("int", "non-negative"): nonneg_int,
    ("int", "at least two"): at_least_two,
    ("int", ""): any_int,
    ("float", "positive"): positive_float,
    ("float", "non-negative"): nonneg_float,
    ("float", "unit interval"): unit_interval,
    ("float", ""): any_float,
    ("bool", ""): boolean,
    ("str", ""): text,
}
