"""The namespace cluster's bus under resource-agents' ``ocf:heartbeat:rabbitmq-cluster`` (the reference).

``ReferenceRabbitInCluster`` is ``RabbitInCluster`` with the profile's ``rabbitmq`` primitive given
the reference agent instead of ours (site overrides: agent, no parameters, the agent's advertised
operations), three brokers clustered, the same ports, node names, ``pause_minority``,
``net_ticktime`` and accounts, so that ``nscluster/bus_bench.py`` measures both the same way.

What the reference needs that is not obvious (read from the agent, 2026-12 Debian 12 resource-agents):

- It has one parameter, ``set_policy`` (a policy set after bootstrapping the first node). The bus's
  queues are quorum queues, declared as such by the clients: no HA policy applies to them, so none
  is set.
- Everything else it hard-codes: ``/usr/sbin/rabbitmq-server`` and ``/usr/sbin/rabbitmqctl`` run
  as root (Debian's wrappers ``su`` to user ``rabbitmq``, HOME ``/var/lib/rabbitmq``), data in
  ``/var/lib/rabbitmq/mnesia``, logs in ``/var/log/rabbitmq``, its pid file in
  ``/var/run/rabbitmq`` (it creates that directory; ``/run`` is each node's own tmpfs already).
  Node name, address and ports come only from ``/etc/rabbitmq/rabbitmq-env.conf``, which the broker
  and every ``rabbitmqctl`` read: written per node into its private ``/etc/rabbitmq`` with
  ``NODENAME=rabbit@nodeN`` (Erlang resolves ``nodeN`` through the private ``/etc/hosts``), the
  node's address for AMQP and for the distribution (``inet_dist_use_interface``), the AMQP,
  distribution and epmd ports of ``nscluster.messaging``. ``rabbitmq.conf`` beside it holds
  ``pause_minority`` and the AMQP heartbeat our clone gets, ``advanced.config`` the same
  ``net_ticktime``.
- The Erlang cookie is ``/var/lib/rabbitmq/.erlang.cookie`` (owner ``rabbitmq``, 0400): the
  broker's and the CLI's HOME.
- The clone must be ``ordered``: its start bootstraps a new cluster whenever no other node has
  published its broker's name (a transient node attribute written by a start or a monitor), so
  two nodes starting at once would form two clusters. ``notify``: on a peer's stop (also the implied
  stop of a fenced node) the survivors ``forget_cluster_node`` it. ``interleave`` as ours.
- Its start on a node that finds a running peer (every restart after a crash here) deletes
  ``/var/lib/rabbitmq/mnesia`` and joins as a new node; its start on a node finding none (a
  bootstrap) deletes it too. The bench reports whether the crashed node's data directory was
  replaced, and how many members the quorum queue has after each crash (the reference does not
  add a rejoined node back to a quorum queue).
- Its monitor fails a node whose broker sees fewer than half of the brokers Pacemaker reports
  running; there is no deeper monitor (no AMQP, no publish).
- The accounts are created after formation as for ours; a bootstrap would delete them (its
  backup and restore of users fail on RabbitMQ 3.10, docs/rabbitmq.md), which a crash of one node
  never causes.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import time

from nscluster.messaging import (
    ADVANCED_CONFIG,
    CLONE,
    CONFIG_DIR,
    DIST_PORT,
    EPMD_PORT,
    HOME,
    LOG_DIR,
    NET_TICKTIME_S,
    PORT,
    RESOURCE,
    USER,
    RabbitInCluster,
)

AGENT = "ocf:heartbeat:rabbitmq-cluster"
ENV_CONF = f"{CONFIG_DIR}/rabbitmq-env.conf"
BROKER_CONF = f"{CONFIG_DIR}/rabbitmq.conf"
PLUGINS = f"{CONFIG_DIR}/enabled_plugins"
COOKIE = f"{HOME}/.erlang.cookie"
HEARTBEAT_S = 5  # what RabbitInCluster.overrides() gives our agent
# The agent's advertised operations (its meta-data): start 100 s, stop 90 s, monitor every 10 s.
OPS = (
    {"name": "start", "interval": "0s", "timeout": "100s"},
    {"name": "stop", "interval": "0s", "timeout": "90s"},
    {"name": "monitor", "interval": "10s", "timeout": "40s"},
)
CLONE_META = {"interleave": True, "ordered": True, "notify": True}


@dataclasses.dataclass
class ReferenceRabbitInCluster(RabbitInCluster):
    """The broker clone under ``ocf:heartbeat:rabbitmq-cluster``."""

    monitor_depth20: bool = False  # the reference has no deep monitor
    agent: str = AGENT

    def prepare(self, _mysql_socket: str = "") -> None:
        """Every node's private /etc/hosts, rabbitmq-env.conf, rabbitmq.conf, advanced.config and
        cookie."""
        import secrets

        began = time.monotonic()
        self.private_hosts()
        cookie = secrets.token_hex(20)
        entry = pwd.getpwnam(USER)
        for name, node in self.cluster.nodes.items():
            config_dir = self.cluster.node_path(name, CONFIG_DIR)
            os.chown(config_dir, 0, 0)
            config_dir.chmod(0o755)
            for directory in (HOME, LOG_DIR):
                private = self.cluster.node_path(name, directory)
                os.chown(private, entry.pw_uid, entry.pw_gid)
                private.chmod(0o750)
            address = node.address
            erlang_address = "{" + address.replace(".", ",") + "}"
            env = (f"NODENAME=rabbit@{name}\nNODE_IP_ADDRESS={address}\nNODE_PORT={PORT}\n"
                   f"DIST_PORT={DIST_PORT}\nERL_EPMD_PORT={EPMD_PORT}\n"
                   f"CONFIG_FILE={BROKER_CONF}\nADVANCED_CONFIG_FILE={ADVANCED_CONFIG}\n"
                   f"ENABLED_PLUGINS_FILE={PLUGINS}\n"
                   f'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {erlang_address}"\n')
            broker = ("cluster_partition_handling = pause_minority\n"
                      f"heartbeat = {HEARTBEAT_S}\nlog.console = false\nlog.file.level = info\n")
            for path, text in ((ENV_CONF, env), (BROKER_CONF, broker), (PLUGINS, "[].\n"),
                               (ADVANCED_CONFIG, f"[{{kernel, [{{net_ticktime, {NET_TICKTIME_S}}}]}}].\n")):
                write_fresh(str(self.cluster.node_path(name, path)), text, 0, 0, 0o644)
            write_fresh(str(self.cluster.node_path(name, COOKIE)), cookie, entry.pw_uid, entry.pw_gid, 0o400)
        self.cluster.progress(f"RabbitMQ (reference agent) prepared in {time.monotonic() - began:.1f} s "
                              f"(brokers {self.peers} on port {PORT})")

    def overrides(self) -> dict[str, dict[str, object]]:
        """Site tables: the profile's broker primitive under the reference agent, an ordered clone."""
        return {
            f"primitive.{RESOURCE}": {"enabled": True, "agent": self.agent, "ops": [dict(op) for op in OPS]},
            f"clone.{CLONE}": {"enabled": True, "resource": RESOURCE, "meta": dict(CLONE_META)},
        }

    def identity(self, node: str) -> tuple[int, int] | None:
        """(pid inside the node, start time) of the node's broker VM (user rabbitmq, not a CLI's VM)."""
        return broker_identity(self.cluster.nodes[node].pid1)


def broker_identity(pid1: int | None) -> tuple[int, int] | None:
    """The RabbitMQ server VM in the PID namespace of ``pid1``: an Erlang VM of user rabbitmq that
    is not an escript (the CLI tools' VMs are)."""
    if pid1 is None:
        return None
    try:
        namespace = os.stat(f"/proc/{pid1}/ns/pid").st_ino
        uid = pwd.getpwnam(USER).pw_uid
    except (OSError, KeyError):
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        proc = f"/proc/{entry}"
        try:
            if os.stat(proc).st_uid != uid or os.stat(f"{proc}/ns/pid").st_ino != namespace:
                continue
            with open(f"{proc}/stat", "rb") as handle:
                stat = handle.read()
            comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
            if not comm.startswith(b"beam"):
                continue
            with open(f"{proc}/cmdline", "rb") as handle:
                if b"escript" in handle.read():
                    continue
            with open(f"{proc}/status", "rb") as handle:
                nspid = [line for line in handle.read().splitlines() if line.startswith(b"NSpid:")]
            start = int(stat[stat.rindex(b")") + 2:].split()[19])
            return int(nspid[0].split()[-1]), start
        except (OSError, ValueError, IndexError):
            continue
    return None


def write_fresh(path: str, text: str, uid: int, gid: int, mode: int) -> None:
    """``text`` in a fresh file at ``path`` for uid:gid (an old file is removed, never reopened; O_EXCL
    and O_NOFOLLOW refuse whatever took its place)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchown(handle.fileno(), uid, gid)
        os.fchmod(handle.fileno(), mode)
        handle.write(text)
