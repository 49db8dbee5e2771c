"""Which of the CUDA back end's newer paths are selected (``SINSIM_CUDA_KERNEL``).

The CUDA kernels verified on a device run by default; the newer paths run only
when the environment variable ``SINSIM_CUDA_KERNEL`` selects them:

* unset, ``""`` or ``"v1"``: the verified kernels only;
* ``"v2"``: ``backward``, ``online``, ``scaling`` and ``graph``;
* a comma-separated list of parts: ``backward`` (the fused backward: plan,
  ``P y``, ``P^T x`` and the marginals in one launch, no ``(n, m)``
  temporary), ``online`` (``cost_mode="online"`` on CUDA, and
  ``cost_mode="auto"`` choosing it by memory), ``scaling`` (eps-scaling run on
  the device instead of the ATen-generic solver), ``graph`` (the fused forward
  uploads its problem descriptors by kernel launches, so a CUDA graph can
  capture the call), ``passes`` (plain iterations on the stored cost run the
  pass solver instead of the fused kernel: an A/B of the two forwards, not in
  ``v2``).

The C++ back end reads the variable on every call (``csrc/cuda/kernel_choice.h``);
this module parses the same grammar for the choices made in Python
(``cost_mode="auto"``). Set it before the first call: ``torch.compile``
reads it once, when it traces.
"""

from __future__ import annotations

import os
import warnings

ENV = "SINSIM_CUDA_KERNEL"
PARTS = ("backward", "online", "scaling", "graph", "passes")
V2 = ("backward", "online", "scaling", "graph")
_ACCEPTED = (
    "'v1' (the verified kernels, the default), 'v2' (backward, online, scaling and graph) or a "
    "comma-separated list of " + ", ".join(PARTS)
)


def parse(value: str) -> frozenset:
    """The parts a value of ``SINSIM_CUDA_KERNEL`` selects; ``ValueError`` for anything else."""
    text = value.strip(" \t")
    if text in ("", "v1"):
        return frozenset()
    if text == "v2":
        return frozenset(V2)
    parts = set()
    for part in text.split(","):
        part = part.strip(" \t")
        if part not in PARTS:
            raise ValueError(f"{ENV} must be {_ACCEPTED}; got '{text}' ('{part}' is not one of them)")
        parts.add(part)
    return frozenset(parts)


def selected() -> frozenset:
    """The parts selected in the environment now."""
    return parse(os.environ.get(ENV, ""))


_warned_without_cuda = False


def selected_for(device_type: str, backends) -> frozenset:
    """The parts that apply to a call on ``device_type``: none off CUDA.

    A selection made in a build without the CUDA back end has no effect; that
    is said once (a ``UserWarning``) instead of passing silently.
    """
    global _warned_without_cuda
    parts = selected()
    if parts and "cuda" not in backends and not _warned_without_cuda:
        _warned_without_cuda = True
        warnings.warn(
            f"{ENV}={os.environ.get(ENV, '')} selects CUDA kernels, but this build of sinsim_ext has no CUDA "
            "back end (rebuild with a CUDA toolkit, see setup.py): the CPU kernels run.",
            UserWarning,
            stacklevel=4,
        )
    return parts if device_type == "cuda" else frozenset()
