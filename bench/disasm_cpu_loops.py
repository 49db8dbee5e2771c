"""Which instructions the CPU loops' hot loops compile to, per code path.

    python bench/disasm_cpu_loops.py                      # the objects of the last in-place build
    python bench/disasm_cpu_loops.py path/to/loops_avx2.o ...
    OBJDUMP=aarch64-linux-gnu-objdump python bench/disasm_cpu_loops.py arm/loops_default.o

For each float32 loop function of csrc/cpu/loops_impl.h it prints the hot
loop (of the innermost loops without calls, a backward branch and what it
jumps over, the one with the most floating-point arithmetic) and the
mnemonics in it, with the widest vector register it touches (xmm/ymm/zmm on
x86, v.4s/q on ARM; "scalar" when none). A scalar hot loop in an AVX2 or
AVX-512 object is what this file catches.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# label: the functions that may hold the loop (the compiler inlines some)
FUNCTIONS = {
    "row LSE (one pass)": ["row_sum_shifted<float>", "row_lse2<float>"],
    "column sums": ["col_sums_f32"],
    "cost tile": ["cost_tile<float, false, 2, 4>", "cost_rows<float>"],
    "plan row": ["plan_row<float>"],
}
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )*\s*([a-z][a-z0-9.]*)\s*(.*)$")
BRANCH = re.compile(r"^(j[a-z]+|b|b\.[a-z]+|cbn?z|tbn?z)$")
CALL = re.compile(r"^(call|bl|blr)$")
ARITH = re.compile(
    r"^v?(fn?m(add|sub)[0-9]+(ps|ss|pd|sd)|(add|sub|mul|max|min)(ps|ss|pd|sd))$"
    r"|^(fmla|fmls|fadd|fsub|fmul|fmax|fmin|fmaxnm|fminnm)$"
)


def disassemble(obj: str) -> dict[str, list[tuple[int, str, str]]]:
    objdump = os.environ.get("OBJDUMP", "objdump")
    text = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", obj], check=True, capture_output=True, text=True).stdout
    functions, current = {}, None
    for line in text.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            current = functions.setdefault(header.group(1), [])
            continue
        m = INSN.match(line)
        if m and current is not None:
            current.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return functions


def loops(insns):
    """(start, end) address ranges of backward branches, innermost first."""
    found = []
    for addr, op, args in insns:
        target = re.match(r"([0-9a-f]+) <", args.strip())
        if BRANCH.match(op) and target:
            dest = int(target.group(1), 16)
            if dest <= addr:
                found.append((dest, addr))
    return sorted(found, key=lambda r: r[1] - r[0])


def width(args_list):
    text = " ".join(args_list)
    for reg, name in (("zmm", "zmm (512-bit)"), ("ymm", "ymm (256-bit)"), ("xmm", "xmm (128-bit)")):
        if reg in text:
            return name
    if re.search(r"\bv\d+\.(4s|2d|16b)\b|\bq\d+\b", text):
        return "v (128-bit NEON)"
    return "scalar"


def report(obj: str) -> None:
    print(f"== {obj}")
    functions = disassemble(obj)
    for label, candidates in FUNCTIONS.items():
        body = hot_loop(functions, candidates)
        if body is None:
            print(f"  {label}: no loop found")
            continue
        vector_ops = [args for op, args in body if not BRANCH.match(op)]
        counts = collections.Counter(op for op, _ in body)
        mix = " ".join(f"{op}x{c}" if c > 1 else op for op, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        calls = sorted({called(args) for op, args in body if CALL.match(op)})
        note = f" (calls {', '.join(calls)})" if calls else ""
        print(f"  {label}: {len(body)} instructions, {width(vector_ops)}{note}: {mix}")


def called(args: str) -> str:
    """The short name of a call's target: 'exp2_shifted' from '4900 <ns::exp2_shifted(...)>'."""
    name = args.split("<", 1)[-1].replace("(anonymous namespace)", "")
    return name.split("(", 1)[0].split("::")[-1]


def hot_loop(functions, candidates):
    """The innermost loop with the most floating-point arithmetic, call-free ones first."""
    bodies = []
    for want in candidates:
        for name, insns in functions.items():
            if want not in name:
                continue
            all_loops = loops(insns)
            for start, end in all_loops:
                if any(o != (start, end) and start <= o[0] and o[1] <= end for o in all_loops):
                    continue  # not innermost
                body = [(op, args) for addr, op, args in insns if start <= addr <= end]
                if not any(op == "ret" for op, _ in body):  # a jump back from an epilogue is no loop
                    bodies.append(body)
    if not bodies:
        return None

    def score(body):
        has_call = any(CALL.match(op) for op, _ in body)
        return (not has_call, sum(bool(ARITH.match(op)) for op, _ in body))

    return max(bodies, key=score)


def main(argv):
    objects = argv or sorted(glob.glob(str(ROOT / "build" / "temp.*" / "csrc" / "cpu" / "loops_*.o")))
    objects = [o for o in objects if "dispatch" not in o]
    if not objects:
        sys.exit("no csrc/cpu/loops_*.o found: build in place first (python setup.py build_ext --inplace)")
    for obj in objects:
        report(obj)


if __name__ == "__main__":
    main(sys.argv[1:])
