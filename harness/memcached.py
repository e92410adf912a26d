"""Our installed memcached agent, run the way Pacemaker's executor runs it (tests, bench).

One ``MemcachedResource`` is one resource instance: its own state under
``workdir`` (``HA_RSCTMP``), its own port, its log in ``workdir/memcached-logs``
(a directory the agent creates for user memcache at the first start).
"""

from __future__ import annotations

import os

from harness.ocfrun import InstalledResource
from harness.stack import AGENT_DIR, HOST

AGENT = os.path.join(AGENT_DIR, "memcached")


class MemcachedResource(InstalledResource):
    AGENT = AGENT
    NAME = "memcached"

    def __init__(self, workdir: str, port: int, instance: str = "", **params: str) -> None:
        super().__init__(workdir, instance or f"memcached-{port}")
        self.params = {"host": HOST, "port": str(port),
                       "log_file": os.path.join(workdir, "memcached-logs", f"{self.instance}.log"), **params}

    @property
    def port(self) -> int:
        return int(self.params["port"])
