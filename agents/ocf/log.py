"""Logging the way the cluster expects it, without the ``logging`` module.

Pacemaker hands agents ``HA_LOGFACILITY`` (a syslog facility, or ``none``),
``HA_LOGFILE`` and ``HA_DEBUGLOG`` (files to append to), ``HA_DEBUG`` and
``HA_debug``.  ``HA_debug`` is kept as the string it is (Pacemaker copies
``PCMK_debug`` there, which may be ``yes`` or a list of daemon names); any
value other than empty/0/no/false/off turns debug messages on.  With no
logging destination at all (an agent run by hand) messages go to stderr.

Every registered secret is replaced by ``***`` before a message leaves.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

LEVELS = ("debug", "info", "notice", "warning", "err", "crit")
OFF_VALUES = frozenset(("", "0", "no", "false", "off", "n"))
REDACTED = "***"


def debug_enabled(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip().lower() not in OFF_VALUES for name in ("HA_debug", "HA_DEBUG"))


class Logger:
    def __init__(self, tag: str, env: Mapping[str, str]) -> None:
        self.tag = tag
        self.facility = env.get("HA_LOGFACILITY", "").strip().lower()
        self.logfile = env.get("HA_LOGFILE", "")
        self.debuglog = env.get("HA_DEBUGLOG", "")
        self.debug_on = debug_enabled(env)
        self._secrets: list[str] = []
        self._syslog_open = False

    def add_secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)
            self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._emit("debug", msg)

    def info(self, msg: str) -> None:
        self._emit("info", msg)

    def warning(self, msg: str) -> None:
        self._emit("warning", msg)

    def error(self, msg: str) -> None:
        self._emit("err", msg)

    def _emit(self, level: str, msg: str) -> None:
        text = self.redact(msg)
        wrote = False
        if self.facility and self.facility != "none":
            self._syslog(level, text)
            wrote = True
        target = self.debuglog if (level == "debug" and self.debuglog) else self.logfile
        if target:
            wrote = self._append(target, level, text) or wrote
        if not wrote:
            sys.stderr.write(f"{self.tag}: {level.upper()}: {text}\n")

    def _syslog(self, level: str, text: str) -> None:
        import syslog

        if not self._syslog_open:
            facility = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
            syslog.openlog(self.tag, syslog.LOG_PID, facility)
            self._syslog_open = True
        priority = getattr(syslog, "LOG_" + level.upper(), syslog.LOG_INFO)
        syslog.syslog(priority, text)

    def _append(self, path: str, level: str, text: str) -> bool:
        stamp = time.strftime("%b %d %H:%M:%S")
        line = f"{self.tag}[{os.getpid()}]: {stamp} {level.upper()}: {text}\n"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError:
            return False
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
        return True


def one_line(text: str, limit: int = 480) -> str:
    """Exit reasons are a single line; Pacemaker keeps only the first one."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
