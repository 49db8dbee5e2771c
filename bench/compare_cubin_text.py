"""Do two builds of a CUDA file hold the same machine code for each kernel?

    nvcc -cubin -arch=sm_90 -O3 ... old.cu -o old.cubin   (the flags setup.py uses, -cubin for -c)
    nvcc -cubin -arch=sm_90 -O3 ... new.cu -o new.cubin
    python bench/compare_cubin_text.py old.cubin new.cubin

Compares the bytes of every kernel's .text section (readelf; no CUDA binary
tools needed), matching kernels by name with the anonymous-namespace hash
(which depends on the file name) removed. A change that must leave the
verified kernels alone (an opt-in path in the same file) shows "same" for
each of them; relocated addresses are zero in .text, so this compares code,
not the layout of other symbols.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys


def kernel_text(path: str) -> dict:
    listing = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    data = open(path, "rb").read()
    out = {}
    for line in listing.splitlines():
        m = re.search(r"\]\s+(\.text\.\S+)\s+\S+\s+\S+\s+(\S+)\s+(\S+)", line)
        if not m:
            continue
        name, offset, size = m.group(1), int(m.group(2), 16), int(m.group(3), 16)
        key = re.sub(r"\d+_GLOBAL__N__\w+?_cu_\w{8}", "<anon>", name)
        out[key] = (hashlib.sha1(data[offset : offset + size]).hexdigest()[:12], size)
    return out


def main(old: str, new: str) -> int:
    a, b = kernel_text(old), kernel_text(new)
    for key in sorted(set(a) | set(b)):
        status = "same" if a.get(key) == b.get(key) else ("only new" if key not in a else "only old" if key not in b else "DIFF")
        print(f"{status:9s} {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
