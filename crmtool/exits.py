"""crmtool's exit statuses: Pacemaker's (``crm_error -X -n N`` names them CRM_EX_<name>), and 128 +
the signal for a run ended by one.  The CLI, the errors and the documentation table read this.
"""

from __future__ import annotations

import enum
import signal


class Exit(enum.IntEnum):
    meaning: str

    def __new__(cls, value: int, meaning: str = "") -> Exit:  # Exit(65): a lookup by value
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "success"
    ERROR = 1, "a simulation scenario failed, or another failure without a more precise status"
    USAGE = 64, "an unknown command or option, or options that do not go together"
    DATAERR = 65, "errors in the description, or a patch file that crmtool diff did not write"
    NOINPUT = 66, "the site, CIB (`--cib`, `$CIB_file`) or patch file is missing"
    UNAVAILABLE = 69, "a Pacemaker tool is missing or failed"
    SOFTWARE = 70, ("crmtool rendered XML that Pacemaker's schema rejects, or another crmtool bug "
                    "(`CRMTOOL_DEBUG=1` shows the traceback)")
    CANTCREAT = 73, "an output file cannot be written"
    TEMPFAIL = 75, "the CIB changed between diff and patch (nothing applied: run again)"
    CONFIG = 78, "`crm_verify` rejects the configuration"
    INTERRUPTED = 128 + signal.SIGINT, "interrupted (Ctrl-C)"
    BROKEN_PIPE = 128 + signal.SIGPIPE, ("the reader of the output went away (a pipe into `head`): quiet, as "
                                         "a tool killed by SIGPIPE")


def table() -> str:
    """The documentation's table of exit statuses (docs/crmtool.md holds it; a test compares)."""
    rows = [f"| {status.value} | `{status.name}` | {status.meaning} |" for status in Exit]
    return "\n".join(["| exit | name | meaning |", "|---|---|---|", *rows])
