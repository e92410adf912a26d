"""OCF agent for nova-conductor, nova's RPC service that talks to the database for the others."""

from __future__ import annotations

from agents.nova_rpc import LONGDESC, NovaRpcService


class NovaConductor(NovaRpcService):
    name = "nova-conductor"
    shortdesc = "OpenStack compute conductor (nova-conductor)"
    longdesc = LONGDESC.format(name="nova-conductor")
    default_binary = "/usr/bin/nova-conductor"


AGENT = NovaConductor

if __name__ == "__main__":
    AGENT.main()
