"""Waiting for conditions, and whether a process still runs: what the real-service tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def eventually(check: Callable[[], T], timeout: float = 30.0, every: float = 0.1) -> T:
    """Call ``check`` until its result is truthy or ``timeout`` seconds have passed; its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


def processes_holding(text: str, exclude: set[int] | None = None) -> list[str]:
    """Every process (but ``exclude``) whose command line or environment contains ``text``:
    ``"<pid> cmdline"`` or ``"<pid> environ"``."""
    import os

    needle = text.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (exclude or set()):
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{part}", "rb") as handle:
                    if needle in handle.read():
                        found.append(f"{entry} {part}")
            except OSError:
                continue
    return found
