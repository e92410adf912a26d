"""OCF agent for nova-scheduler, nova's RPC service that picks a host for each new server."""

from __future__ import annotations

from agents.nova_rpc import LONGDESC, NovaRpcService


class NovaScheduler(NovaRpcService):
    name = "nova-scheduler"
    shortdesc = "OpenStack compute scheduler (nova-scheduler)"
    longdesc = LONGDESC.format(name="nova-scheduler")
    default_binary = "/usr/bin/nova-scheduler"


AGENT = NovaScheduler

if __name__ == "__main__":
    AGENT.main()
