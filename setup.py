"""Builds the C++/CUDA extension sinsim_ext._C (metadata lives in pyproject.toml).

    pip install -e . --no-build-isolation

Environment variables:
    SINSIM_BUILD_CUDA     auto (default): compile the CUDA kernels when a CUDA
                          toolkit and a CUDA build of torch are both present;
                          0: CPU only; 1: CUDA required (fail if impossible).
    TORCH_CUDA_ARCH_LIST  GPU architectures (default "9.0+PTX": Hopper machine
                          code plus PTX that newer GPUs compile at load time).
    CUDA_HOME             the toolkit to use; found automatically otherwise.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_CUDA_ARCHS = "9.0+PTX"


def _is_cuda_toolkit(root) -> bool:
    """A real toolkit has nvcc, the runtime headers and libcudart side by side."""
    if not root:
        return False
    root = Path(root)
    has_lib = any((root / lib / "libcudart.so").exists() for lib in ("lib64", "lib", "lib/x64"))
    return (root / "bin" / "nvcc").exists() and (root / "include" / "cuda_runtime.h").exists() and has_lib


def _find_cuda_home():
    """CUDA_HOME, CUDA_PATH, /usr/local/cuda, the nvcc on PATH, /usr/local/cuda-*.

    The nvcc on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc), whose
    parent folder is no toolkit: torch would then guess CUDA_HOME=/usr/local
    and fail to link libcudart, so every candidate is checked before use.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for candidate in candidates:
        if _is_cuda_toolkit(candidate):
            return str(Path(candidate).resolve())
    return None


def _cuda_wanted() -> str:
    mode = os.environ.get("SINSIM_BUILD_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"SINSIM_BUILD_CUDA must be auto, 0 or 1, got {mode!r}")
    return mode


MODE = _cuda_wanted()
CUDA_HOME = _find_cuda_home() if MODE != "0" else None
if CUDA_HOME:
    # Must be set before torch.utils.cpp_extension is imported: it reads it once.
    os.environ["CUDA_HOME"] = CUDA_HOME
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = MODE != "0" and CUDA_HOME is not None and torch.version.cuda is not None
if MODE == "1" and not WITH_CUDA:
    raise SystemExit(
        "SINSIM_BUILD_CUDA=1 but the CUDA kernels cannot be built: "
        f"toolkit found: {CUDA_HOME or 'none'}, torch CUDA version: {torch.version.cuda or 'none (CPU build)'}"
    )

# csrc/core: the op, its options, the cost table and the device-independent
# driver; csrc/cpu and csrc/cuda: the back ends (csrc/cuda/kernel_choice.cpp is
# plain C++, compiled in every build). Includes are relative to csrc/.
csrc = ROOT / "csrc"
sources = [str(p.relative_to(ROOT)) for p in sorted(csrc.glob("*/*.cpp"))]
include_dirs = [str(csrc)]
# ATen's vector headers (csrc/cpu/loops_impl.h) use `#pragma unroll`, unknown to GCC
cxx_flags = ["-O3", "-fopenmp", "-Wno-unknown-pragmas"]

# The CPU loops' per-instruction-set copies (csrc/cpu/loops.h), compiled with
# their own flags the way ATen compiles its CPU_CAPABILITY kernels; elsewhere
# they compile to empty tables and the default copy runs.
ISA_FLAGS = {}
if platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt":
    ISA_FLAGS = {
        "loops_avx2.cpp": ["-mavx2", "-mfma"],
        "loops_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    }
define_macros = []
if WITH_CUDA:
    sources += [str(p.relative_to(ROOT)) for p in sorted(csrc.glob("cuda/*.cu"))]
    define_macros.append(("SINSIM_WITH_CUDA", None))
    extension = CUDAExtension(
        "sinsim_ext._C",
        sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo", "-DSINSIM_WITH_CUDA"]},
        extra_link_args=["-fopenmp"],
    )
else:
    extension = CppExtension(
        "sinsim_ext._C",
        sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


class BuildExtensionPerISA(BuildExtension):
    """torch's BuildExtension, plus per-file flags for the ISA_FLAGS sources."""

    def build_extension(self, ext):
        own = [src for src in ext.sources if Path(src).name in ISA_FLAGS]
        if own:
            ext.sources = [src for src in ext.sources if src not in own]
            args = ext.extra_compile_args
            cxx = list(args["cxx"] if isinstance(args, dict) else args)
            for src in own:
                ext.extra_objects += self.compiler.compile(
                    [src], output_dir=self.build_temp, macros=ext.define_macros,
                    include_dirs=ext.include_dirs, extra_postargs=cxx + ISA_FLAGS[Path(src).name],
                    depends=ext.depends,
                )
        super().build_extension(ext)


print(f"sinsim_ext: building the CPU kernels{' and the CUDA kernels (' + os.environ['TORCH_CUDA_ARCH_LIST'] + ', toolkit ' + CUDA_HOME + ')' if WITH_CUDA else ''}")

setup(ext_modules=[extension], cmdclass={"build_ext": BuildExtensionPerISA})
