"""What the benchmarks share: the median wall time of repeated calls, and the peak memory of
a command that runs more than one process."""

from __future__ import annotations

import os
import statistics
import subprocess
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
    from wait4, which is exact, so only the other processes' last moments can be missed.
    The sum of the peaks is at least the peak of the sum.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peaks: dict[int, int] = {}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        todo = _children(proc.pid)
        while todo:
            child = todo.pop()
            peaks[child] = max(peaks.get(child, 0), _hwm_kb(child))
            todo += _children(child)
        time.sleep(every)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if not peaks:
        return usage.ru_maxrss / 1024, 1
    largest = max(peaks.values())
    return (sum(peaks.values()) - largest + max(largest, usage.ru_maxrss)) / 1024, len(peaks)
