"""Speed on shared cores: how much a workload slows down when other processes
keep cores busy, for each threading setting (a measuring script, not a test).

    python bench/shared_cores.py                      # every setting, 0/1/2 busy processes, 2 repeats
    python bench/shared_cores.py --repeats 3 --json bench/measurements/shared-cores.json

For each repeat, busy count (0, 1, 2 processes running ``while True: pass``)
and setting, each workload runs once in a fresh process; the busy processes
start before it and stop after it. The figure reported is the workload's
wall time as a ratio to the same setting's quiet run (0 busy) of the same
repeat, so a machine whose background load drifts between repeats still
gives comparable ratios. Slowing in proportion to its share of the cores
means, on 2 cores, at most 2x with one busy process (each process gets a
core) and 3x with two (two thirds of a core each), for a workload whose
quiet run kept both cores busy; less for one that did not. Each line also
gives the CPU seconds the workload used (threads spinning at barriers show
up there) and the 1-minute load average at its start: other users' jobs
count as well.

Workloads:

* ``digits``: a shortened digits command of the trainer (SinSim, one epoch,
  short probes), end to end in its own process;
* ``sinkhorn-term``: the call of ``bench/test_sinkhorn_cpu.py::test_sinsim_term``
  (SinSim's divergence term with the kernel, forward + backward, n = 64 and
  512, d = 512), the median of 20 calls after the warm-up, in its own
  process.

Settings (``--setting NAME=THREADS[,VAR=value...]``): the trainer's
``--cpu-threads`` (``auto``, or a fixed number) and environment variables for
the workload's process. The defaults compare ``torch`` (a fixed thread per
core: what torch does by itself, and what the trainer did before
``--cpu-threads auto``) with ``auto`` (the trainer's default now). The
Sinkhorn-term workload applies the setting as the trainer does
(:mod:`train.cpu_threads`; the thread count may change between two calls,
after a warm-up of :data:`WARM_UP_S` seconds of calls, as in a running
trainer).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

WARM_UP_S = 3.0

DIGITS = ["train/run.py", "--dataset", "digits", "--method", "sinsim", "--epochs", "1", "--train-subset", "192",
          "--probe-epochs", "2", "--geometry-points", "200", "--progress-every", "0", "--overwrite"]
TERM_SIZES = (64, 512)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model.group(1).strip() if model else 'unknown'}, {isa}, {CORES} cores usable"


def parse_setting(text: str) -> Tuple[str, Dict[str, str]]:
    """``"auto,OMP_WAIT_POLICY=PASSIVE"`` -> ``("auto", {"OMP_WAIT_POLICY": "PASSIVE"})``."""
    threads, *assignments = text.split(",")
    if threads != "auto" and not threads.isdigit():
        raise SystemExit(f"error: --setting: {threads!r} is not auto or a number of threads")
    env = {}
    for item in filter(None, assignments):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --setting: {item!r} is not VAR=value")
        env[key] = value
    return threads, env


def timed(cmd: List[str], env: Dict[str, str]) -> Dict[str, float]:
    """Wall seconds and CPU seconds (user + system) of ``cmd`` run to its end."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full_env.update(env)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "output": output}


def run_digits(threads: str, env: Dict[str, str], scratch: Path) -> Dict[str, Dict]:
    done = timed([sys.executable, *DIGITS, "--cpu-threads", threads, "--out", str(scratch / "digits")], env)
    return {"digits": {"seconds": done["wall_s"], "cpu_s": done["cpu_s"]}}


def run_term(threads: str, env: Dict[str, str], scratch: Path) -> Dict[str, Dict]:
    done = timed([sys.executable, "-m", "bench.shared_cores", "--term-worker", threads], env)  # from ROOT: imports train
    return {f"sinkhorn-term n={n}": {"seconds": float(t), "cpu_s": None}
            for n, t in (line.split() for line in done["output"].splitlines() if line[:1].isdigit())}


def term_worker(threads: str) -> None:
    """SinSim's divergence term on 512-d features (bench/test_sinkhorn_cpu.py::test_sinsim_term), forward +
    backward with the kernel: prints ``n median_seconds`` (20 rounds) per size."""
    import sinsim_ext
    from bench.common import EPS, ITERS, embeddings, value_and_grad
    from train import cpu_threads

    cpu_threads.configure(threads, "cpu")
    for n in TERM_SIZES:
        x, y = embeddings(n, d=512)

        def call():
            value_and_grad(sinsim_ext.sinkhorn_cost, x, y, debias=True, eps=EPS, max_iter=ITERS)
            cpu_threads.between_steps()

        start = time.perf_counter()
        while time.perf_counter() - start < WARM_UP_S:
            call()
        times = []
        for _ in range(20):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        print(n, statistics.median(times), flush=True)


WORKLOADS = {"digits": run_digits, "sinkhorn-term": run_term}


class Busy:
    """``count`` processes that keep a core busy each, for a ``with`` block."""

    def __init__(self, count: int):
        self.count, self.procs = count, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        time.sleep(0.5 if self.count else 0)  # let them reach their loop
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--term-worker"]:
        term_worker(argv[1])
        return 0
    torch_threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    defaults = {"torch": torch_threads, "auto": "auto"}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", action="append", metavar="NAME=THREADS[,VAR=value...]",
                   help=f"a threading setting (repeatable; default: {', '.join(f'{k}={v}' for k, v in defaults.items())})")
    p.add_argument("--workload", choices=list(WORKLOADS), action="append", help="default: both")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="numbers of busy processes")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", type=Path, help="write every measurement here")
    args = p.parse_args(argv)
    settings = dict(s.split("=", 1) for s in args.setting) if args.setting else defaults
    settings = {name: parse_setting(value) for name, value in settings.items()}
    workloads = args.workload or list(WORKLOADS)
    print(f"# {cpu_model()}; python {platform.python_version()}; settings: "
          + "; ".join(f"{k}: --cpu-threads {t} {' '.join(f'{a}={b}' for a, b in e.items())}".rstrip()
                      for k, (t, e) in settings.items()), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for repeat in range(args.repeats):
            for busy in args.busy:
                for name, (threads, env) in settings.items():
                    for workload in workloads:
                        with Busy(busy):
                            load = os.getloadavg()[0]
                            for case, got in WORKLOADS[workload](threads, env, scratch).items():
                                rows.append(dict(repeat=repeat, busy=busy, setting=name, case=case, **got,
                                                 load_1min=load))
                                cpu = f", {got['cpu_s']:.1f} CPU s" if got["cpu_s"] is not None else ""
                                print(f"repeat {repeat} busy {busy} {name:10s} {case:34s} {got['seconds']:9.4f} s"
                                      f"{cpu}  (load {load:.2f})", flush=True)
    print("\nratio to the quiet run (0 busy) of the same setting and repeat; load average at the start of each run")
    for row in rows:
        quiet = next(r for r in rows if r["repeat"] == row["repeat"] and r["setting"] == row["setting"]
                     and r["case"] == row["case"] and r["busy"] == args.busy[0])
        row["ratio"] = row["seconds"] / quiet["seconds"]
    for row in sorted(rows, key=lambda r: (r["case"], r["setting"], r["repeat"], r["busy"])):
        print(f"{row['case']:34s} {row['setting']:10s} repeat {row['repeat']} busy {row['busy']}: "
              f"{row['seconds']:9.4f} s  {row['ratio']:6.2f}x  (load {row['load_1min']:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": cpu_model(), "settings": settings, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
