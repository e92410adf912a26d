"""Exit codes (sysexits, as crmtool's) and the one error type the CLI turns into them."""

from __future__ import annotations

OK = 0
GENERIC = 1  # status: the last good backup is older than the threshold
USAGE = 64
DATAERR = 65  # a backup's files do not match its manifest
NOINPUT = 66  # configuration file or backup id not found
UNAVAILABLE = 69  # target or cluster tools unreachable
SOFTWARE = 70  # a bug
CANTCREAT = 73  # the target cannot take the backup (full disk, read-only)
TEMPFAIL = 75  # another run holds the lock
CONFIG = 78  # bad configuration or refused credentials


class BackupError(Exception):
    def __init__(self, message: str, code: int = GENERIC) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
