"""What the benchmarks share: the median wall time of repeated calls, and the peak memory of
a command that runs more than one process."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from typing import Callable


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Call `fn` `runs` times; the median wall time of one call, in seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_peak_mb(argv: list[str], every: float = 0.002) -> tuple[float, int]:
    """Run `argv`; the sum of the peak resident memory of every process it starts (not of
    `argv` itself, a shell), in MB, and how many processes that was.

    /usr/bin/time reports the largest process only. Each process's high-water mark (VmHWM)
    is sampled every `every` seconds while it runs; the largest peak of all is also taken
    from /usr/bin/time, which is exact, so only the other processes' last moments can be
    missed. The sum of the peaks is at least the peak of the sum. (Not wait4 here: a child
    started by vfork, as subprocess does, inherits its parent's high-water mark.)
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peaks: dict[int, int] = {}
        while proc.poll() is None:
            shells = _children(proc.pid)
            todo = [c for s in shells for c in _children(s)]
            while todo:
                child = todo.pop()
                peaks[child] = max(peaks.get(child, 0), _hwm_kb(child))
                todo += _children(child)
            time.sleep(every)
        exact = int(out.read().split()[-1])
    if not peaks:
        return exact / 1024, 1
    largest = max(peaks.values())
    return (sum(peaks.values()) - largest + max(largest, exact)) / 1024, len(peaks)
