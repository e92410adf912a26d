"""Log directories of the services' users, as Debian's /var/log/<service> are: the agents open a
service's log as that user (``agents.ocf.daemon.open_log``), never as root."""

from __future__ import annotations

import os
import shutil


def service_log_dir(workdir: str, name: str, user: str) -> str:
    """``workdir/<name>-logs``, owned by ``user``; made on first use."""
    path = os.path.join(workdir, f"{name}-logs")
    os.makedirs(path, exist_ok=True)
    shutil.chown(path, user, user)
    return path
