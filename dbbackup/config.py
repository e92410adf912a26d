"""The configuration file (TOML): every problem names its key path.

    [target]
    directory = "/srv/backup/openstack-db"   # off the DRBD device: local disk or NFS
    [schedule]
    full_every_days = 7                       # run --auto: a full when the last is older
    [retention]
    fulls = 2                                 # keep this many fulls and their differentials
    [database]
    option_file = "/etc/openstack-ha/backup.cnf"   # [client] user/password, root-only
    datadir = "/var/lib/mysql"
    socket = "/run/mysqld/mysqld.sock"
    [cluster]                                 # absent: a standalone server, always acts
    group = "db"                              # where the database runs
    resource = "mysql"                        # stopped and started by Pacemaker for a restore
    [status]
    max_age_hours = 26
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dbbackup.errors import CONFIG, NOINPUT, BackupError

DEFAULT_PATH = "/etc/openstack-ha/backup.toml"


@dataclass(frozen=True)
class Cluster:
    group: str
    resource: str
    node: str | None  # the local node's name; None: ask crm_node -n


@dataclass(frozen=True)
class Config:
    path: str
    target: str
    full_every_days: float
    fulls: int
    option_file: str
    datadir: str
    socket: str
    owner: str
    scratch: str | None
    max_age_hours: float
    cluster: Cluster | None


class Reader:
    """Typed access to the TOML tables; the first problem is raised with its key path."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, problem: str) -> BackupError:
        return BackupError(f"{self.path}: {key}: {problem}", CONFIG)

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        table: Any = self.data
        for part in key.split("."):
            if not isinstance(table, dict):
                raise self.fail(key, "its parent is not a table")
            table = table.get(part)
            if table is None:
                if default is None:
                    raise self.fail(key, "missing")
                return default
        if kind is float and isinstance(table, int) and not isinstance(table, bool):
            table = float(table)
        if not isinstance(table, kind) or isinstance(table, bool):
            raise self.fail(key, f"must be a {kind.__name__}, not {type(table).__name__}")
        return table

    def path_value(self, key: str, default: str | None = None) -> str:
        value: str = self.get(key, str, default)
        if not os.path.isabs(value):
            raise self.fail(key, f"must be an absolute path, not {value!r}")
        return os.path.normpath(value)

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise self.fail(key, "must be greater than 0")
        return value


KNOWN = {"target": {"directory", "scratch"}, "schedule": {"full_every_days"}, "retention": {"fulls"},
         "database": {"option_file", "datadir", "socket", "owner"},
         "cluster": {"group", "resource", "node"}, "status": {"max_age_hours"}}


def check_keys(reader: Reader) -> None:
    for table, value in reader.data.items():
        if table not in KNOWN:
            raise reader.fail(table, "unknown table")
        if not isinstance(value, dict):
            raise reader.fail(table, "must be a table")
        for key in value:
            if key not in KNOWN[table]:
                raise reader.fail(f"{table}.{key}", "unknown key")


def load(path: str) -> Config:
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise BackupError(f"{path}: no such configuration file", NOINPUT) from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc.strerror}", NOINPUT) from None
    except tomllib.TOMLDecodeError as exc:
        raise BackupError(f"{path}: not valid TOML: {exc}", CONFIG) from None
    reader = Reader(path, data)
    check_keys(reader)
    cluster = None
    if "cluster" in data:
        node = reader.get("cluster.node", str, "") or None
        cluster = Cluster(reader.get("cluster.group", str), reader.get("cluster.resource", str), node)
    scratch = reader.path_value("target.scratch", "/") if "scratch" in data.get("target", {}) else None
    return Config(
        path=path,
        target=reader.path_value("target.directory"),
        full_every_days=reader.positive("schedule.full_every_days", float, 7.0),
        fulls=reader.positive("retention.fulls", int, 2),
        option_file=reader.path_value("database.option_file"),
        datadir=reader.path_value("database.datadir", "/var/lib/mysql"),
        socket=reader.path_value("database.socket", "/run/mysqld/mysqld.sock"),
        owner=reader.get("database.owner", str, "mysql"),
        scratch=scratch,
        max_age_hours=reader.positive("status.max_age_hours", float, 26.0),
        cluster=cluster,
    )
