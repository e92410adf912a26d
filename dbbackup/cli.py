"""openstack-ha-backup: full and differential mariabackup of the database, where it runs.

The only module that prints and exits.  Exit codes (sysexits): 0 ok (also
"not active here"), 1 status: no backup or too old, 64 usage, 65 a damaged
backup, 66 configuration file or backup not found, 69 target or Pacemaker
unreachable, 70 a bug, 73 the target cannot take the backup (full, read-only),
75 another run holds the lock, 78 bad configuration or refused credentials.
"""

from __future__ import annotations

import os
import sys

from dbbackup.errors import SOFTWARE, USAGE, BackupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import NoReturn

    from dbbackup.config import Config
    from dbbackup.ops import Outcome

PROG = "openstack-ha-backup"


def err(line: str) -> None:
    sys.stderr.write(line + "\n")


def cmd_run(cfg: Config, args: argparse.Namespace) -> Outcome:
    from dbbackup import ops

    return ops.run(cfg, args.mode or ops.AUTO_MODE)


def cmd_list(cfg: Config, args: argparse.Namespace) -> Outcome:
    from dbbackup import ops

    return ops.listing(cfg)


def cmd_status(cfg: Config, args: argparse.Namespace) -> Outcome:
    from dbbackup import ops

    return ops.status(cfg, args.max_age)


def cmd_verify(cfg: Config, args: argparse.Namespace) -> Outcome:
    from dbbackup import ops

    if (args.id is None) == (not args.all):
        raise BackupError("verify: give a backup id or --all", USAGE)
    return ops.verify(cfg, args.id)


def cmd_restore(cfg: Config, args: argparse.Namespace) -> Outcome:
    from dbbackup import ops

    return ops.restore(cfg, args.id, args.dry_run)


COMMANDS: dict[str, tuple[Callable[[Config, argparse.Namespace], Outcome], str]] = {
    "run": (cmd_run, "take a backup if the database group is active here (default --auto)"),
    "list": (cmd_list, "list the complete backups: type, base, LSN range, binlog position, size, age"),
    "status": (cmd_status, "age of the last good backup; exit 1 when older than the threshold"),
    "verify": (cmd_verify, "re-check checksums and trial-prepare the chain in a scratch directory"),
    "restore": (cmd_restore, "restore a backup's chain onto the datadir through Pacemaker"),
}


def parser() -> argparse.ArgumentParser:
    import argparse

    from dbbackup.config import DEFAULT_PATH

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:  # type: ignore[override]
            self.print_usage(sys.stderr)
            err(f"{self.prog}: {message}")
            raise SystemExit(USAGE)

    top = Parser(prog=PROG, description=__doc__.splitlines()[0])
    top.add_argument("-c", "--config", default=DEFAULT_PATH, help=f"configuration file ({DEFAULT_PATH})")
    sub = top.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_fn, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == "run":
            kinds = cmd.add_mutually_exclusive_group()
            for flag in ("full", "differential", "auto"):
                kinds.add_argument(f"--{flag}", dest="mode", action="store_const", const=flag)
        elif name == "status":
            cmd.add_argument("--max-age", type=float, metavar="SECONDS",
                             help="threshold (default: status.max_age_hours of the configuration)")
        elif name == "verify":
            cmd.add_argument("id", nargs="?")
            cmd.add_argument("--all", action="store_true", help="every backup")
        elif name == "restore":
            cmd.add_argument("id")
            cmd.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    handler = COMMANDS[args.command][0]
    try:
        from dbbackup import config

        outcome = handler(config.load(args.config), args)
        for line in outcome.lines:
            print(line)
        code = outcome.code
    except BackupError as exc:
        err(f"{PROG}: {exc.message}")
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # last line of defence: a bug is exit 70, not a traceback
        if os.environ.get("OPENSTACK_HA_BACKUP_DEBUG"):
            raise
        err(f"{PROG}: internal error (OPENSTACK_HA_BACKUP_DEBUG=1 shows the traceback): {exc!r}")
        code = SOFTWARE
    raise SystemExit(code)


if __name__ == "__main__":
    main()
