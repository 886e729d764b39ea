"""CPU time of process groups from /proc, for benchmarks.

A snapshot reads every process's utime+stime (its own, all threads) and cutime+cstime (children it
has reaped). A group is a set of processes chosen on each snapshot (a root and its descendants,
or every process with a given name); its CPU is the sum of own + reaped-children time over its
live members. Taking the difference of two snapshots counts a child that exited in between once:
before through itself, after through its parent's cutime/cstime.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    own: int  # ticks: utime + stime
    reaped: int  # ticks: cutime + cstime


def snapshot() -> dict[int, Proc]:
    procs = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[0] is state (stat field 3): ppid is field 4, utime..cstime fields 14..17
        procs[int(entry.name)] = Proc(int(entry.name), int(fields[1]), comm,
                                      int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    return procs


def children_map(procs: dict[int, Proc]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for proc in procs.values():
        found.setdefault(proc.ppid, []).append(proc.pid)
    return found


def subtree(procs: dict[int, Proc], root: int, exclude: set[int] = frozenset()) -> set[int]:
    """root and its descendants, without the subtrees rooted at ``exclude``."""
    if root not in procs:
        return set()
    kids = children_map(procs)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in found or pid in exclude:
            continue
        found.add(pid)
        stack.extend(kids.get(pid, ()))
    return found


def named_trees(procs: dict[int, Proc], names: set[str]) -> set[int]:
    """Every process called one of ``names`` (comm), with its descendants."""
    found: set[int] = set()
    for proc in procs.values():
        if proc.comm in names and proc.pid not in found:
            found |= subtree(procs, proc.pid)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def ticks(procs: dict[int, Proc], pids: set[int]) -> int:
    return sum(procs[pid].own + procs[pid].reaped for pid in pids if pid in procs)


Selector = Callable[[dict[int, Proc]], set[int]]


class Groups:
    """Named selectors; ``take()`` returns the ticks of each group now."""

    def __init__(self) -> None:
        self.selectors: dict[str, Selector] = {}

    def add(self, name: str, selector: Selector) -> None:
        self.selectors[name] = selector

    def take(self) -> dict[str, int]:
        procs = snapshot()
        return {name: ticks(procs, select(procs)) for name, select in self.selectors.items()}

    @staticmethod
    def seconds(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
        return {name: (after[name] - before.get(name, 0)) / CLOCK_TICKS for name in after}
