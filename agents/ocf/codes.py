"""OCF 1.1 exit codes and the exception that carries one to the dispatcher."""

from __future__ import annotations

from enum import IntEnum


class OCF(IntEnum):
    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9
    DEGRADED = 190
    DEGRADED_PROMOTED = 191


class OCFError(Exception):
    """Ends the current action with ``code`` and a one-line exit reason."""

    def __init__(self, code: OCF, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class DeadlineExceeded(OCFError):
    """The action's time budget ran out before it could finish."""

    def __init__(self, what: str) -> None:
        super().__init__(OCF.ERR_GENERIC, f"timed out {what}")
