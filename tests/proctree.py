"""A process and all its descendants, as the kernel counts them: CPU time and PSS.

A gateway with workers is many processes (itself, a forkserver, the workers,
Kamailio and its children); what it costs is the sum over that tree.
"""

from __future__ import annotations

from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # in clock ticks of 1/100 s


def pss_mib(pid: int) -> float:
    """Proportional set size: shared pages divided among the processes sharing them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    return parents


def tree(root: int) -> set[int]:
    """``root`` and every process descended from it."""
    parents = _parents()
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def cpu(pids: set[int]) -> dict[int, float]:
    """utime + stime of each process still there, in seconds."""
    times = {}
    for pid in pids:
        try:
            times[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return times


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``cpu`` readings by processes present in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def pss(pids: set[int]) -> float:
    """Summed PSS in MiB of the processes still there."""
    total = 0.0
    for pid in pids:
        try:
            total += pss_mib(pid)
        except OSError:
            continue
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores; idle and iowait excluded)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / 100
