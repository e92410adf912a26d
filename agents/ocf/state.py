"""Per-instance state kept across actions: what we started, and how.

Files live under ``$HA_RSCTMP`` (``/run/resource-agents``), which is a tmpfs
that a reboot clears, exactly like the processes it describes.
"""

from __future__ import annotations

import os


class StateDir:
    def __init__(self, rsctmp: str, agent: str, instance: str) -> None:
        safe = "".join(ch if ch.isalnum() or ch in "-_.:" else "_" for ch in instance)
        self.path = os.path.join(rsctmp, f"openstack-{agent}-{safe}")

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read(self, name: str) -> str | None:
        try:
            with open(self.file(name), encoding="utf-8") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, name: str, text: str, mode: int = 0o600) -> None:
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        tmp = self.file(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # exactly ``mode``: Pacemaker runs agents with umask 0026
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, self.file(name))

    def remove(self, name: str) -> None:
        try:
            os.unlink(self.file(name))
        except FileNotFoundError:
            pass
