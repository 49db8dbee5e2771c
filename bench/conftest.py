import os

from common import SPEEDUPS
from peers_table import RESULTS as PEER_RESULTS, markdown as peer_markdown


def pytest_addoption(parser):
    parser.addoption(
        "--peers-full", action="store_true", default=False,
        help="bench/test_peers.py: the whole equal-accuracy grid (n up to 4096; hours on 2 cores), not the smoke pass",
    )


def pytest_report_header(config):
    import torch

    import sinsim_ext  # noqa: F401  (loads the operator library)

    forced = os.environ.get("SINSIM_CPU_CAPABILITY") or "unset"
    return (
        f"sinsim CPU paths: {', '.join(torch.ops.sinsim_ext.cpu_capabilities())}; torch's CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()} (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')}, "
        f"SINSIM_CPU_CAPABILITY={forced}); {torch.get_num_threads()} threads; "
        f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )


def pytest_terminal_summary(terminalreporter):
    if PEER_RESULTS:
        terminalreporter.section("time to equal accuracy (bench/test_peers.py)")
        terminalreporter.write_line(peer_markdown(PEER_RESULTS))
    lines = list(SPEEDUPS.lines())
    if lines:
        terminalreporter.section("speed-ups within this run (medians)")
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
