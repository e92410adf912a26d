"""RabbitMQ for nova in the namespace cluster: one broker per node, a Pacemaker clone.

Each node runs its own, unclustered broker (``ocf:heartbeat:anything``): a node fenced and booted
again gets its broker back from Pacemaker, and nova's ``transport_url`` lists all three, so a
client fails over to another broker when its own is gone. The brokers share no queues (no
clustering, no mirrored or quorum queues): messages held by a broker that dies are lost, which the
API (``nova-api`` only casts and calls with timeouts) tolerates and a compute fleet would not.

Each node has a private ``/etc/rabbitmq`` (``rabbitmq-env.conf``: node name, the node's address, the
ports; ``rabbitmq.conf``, 0600: the account nova logs in with, created on the broker's first boot),
``/var/lib/rabbitmq`` (its HOME: the Erlang cookie and the message store) and ``/var/log/rabbitmq``.
``anything`` runs its command through ``su - root``, so the command drops to user rabbitmq itself
(``setpriv --reset-env``, which also sets the HOME where the cookie lives); the password is in no
command line and no environment.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

from nscluster.cluster import Cluster

CONFIG_DIR = "/etc/rabbitmq"
HOME = "/var/lib/rabbitmq"
LOG_DIR = "/var/log/rabbitmq"
RABBIT_DIRS = (CONFIG_DIR, HOME, LOG_DIR)
USER = "rabbitmq"
PORT = 35672  # AMQP; Erlang distribution on PORT + 20000 (loopback only), epmd on EPMD_PORT
EPMD_PORT = 14369
RESOURCE = "rabbitmq"
CLONE = "rabbitmq-clone"
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not /usr/sbin's wrapper: it su's and logs to /var/log
# "+S 1:1": one scheduler thread; the default (one per core, busy-waiting) competes with
# everything else on this 2-core machine running three nodes.
ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1} +S 1:1 +sbwt none"
MONITORS = ({"name": "monitor", "interval": "10s", "timeout": "20s"},)


@dataclasses.dataclass
class RabbitInCluster:
    """A broker per node; ``transport_url`` is what nova connects with."""

    cluster: Cluster
    user: str = "nova"
    password: str = dataclasses.field(default_factory=lambda: "mq-" + secrets.token_hex(12))

    @property
    def passwords(self) -> tuple[str, ...]:
        return (self.password,)

    @property
    def transport_url(self) -> str:
        brokers = ",".join(f"{self.user}:{self.password}@{node.address}:{PORT}"
                           for node in self.cluster.nodes.values())
        return f"rabbit://{brokers}/"

    def prepare(self, _mysql_socket: str = "") -> None:
        """Every node's configuration, cookie and directories (the brokers start under Pacemaker)."""
        from nscluster.openstack import write_private

        began = time.monotonic()
        cookie = secrets.token_hex(16)
        for name, node in self.cluster.nodes.items():
            environment = (f"NODENAME=rabbit@localhost\nNODE_IP_ADDRESS={node.address}\nNODE_PORT={PORT}\n"
                           f"DIST_PORT={PORT + 20000}\nERL_EPMD_PORT={EPMD_PORT}\n"
                           f'SERVER_ADDITIONAL_ERL_ARGS="{ERL_ARGS}"\n')
            write_private(self.cluster, name, USER, RABBIT_DIRS, f"{CONFIG_DIR}/rabbitmq-env.conf",
                          environment)
            write_private(self.cluster, name, USER, (), f"{CONFIG_DIR}/rabbitmq.conf",
                          f"default_user = {self.user}\ndefault_pass = {self.password}\n"
                          "default_vhost = /\nlog.console = false\nlog.file.level = info\n", mode=0o600)
            write_private(self.cluster, name, USER, (), f"{HOME}/.erlang.cookie", cookie, mode=0o400)
        self.cluster.progress(f"RabbitMQ prepared in {time.monotonic() - began:.1f} s "
                              f"(a broker per node on port {PORT})")

    def overrides(self) -> dict[str, dict[str, object]]:
        """Site tables adding the broker clone, which the profile lacks."""
        command = (f"--reuid={USER} --regid={USER} --init-groups --reset-env "
                   f"/usr/bin/env LANG=C.UTF-8 {SERVER}")
        return {
            f"primitive.{RESOURCE}": {"agent": "ocf:heartbeat:anything", "ops": [
                {"name": "start", "timeout": "60s"}, {"name": "stop", "timeout": "90s"}, *MONITORS]},
            f"primitive.{RESOURCE}.params": {"binfile": "/usr/bin/setpriv", "cmdline_options": command,
                                             "logfile": f"{LOG_DIR}/console.log"},
            f"clone.{CLONE}": {"resource": RESOURCE, "meta": {"interleave": True}},
        }

    # the brokers on the nodes ----------------------------------------------

    def broker_pid(self, node: str) -> int | None:
        """The pid (inside the node) of the node's Erlang VM running the broker, if any."""
        done = self.cluster.run(node, ["pgrep", "-u", USER, "-f", "beam.*rabbit"], check=False)
        pids = [int(pid) for pid in done.stdout.split()]
        return pids[0] if pids else None
