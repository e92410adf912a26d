"""Every agent this project ships, by OCF type name.

The installer, the contract tests, crmtool's parameter checks and the README
tables all iterate over this table, so a new agent is registered once here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agents.ocf.agent import Agent

# The OCF provider directory our agents are installed under (ocf:<PROVIDER>:<type>).
PROVIDER = "openstack"

AGENTS: dict[str, str] = {
    "vip": "agents.vip",
    "keystone": "agents.keystone",
    "glance-api": "agents.glance_api",
    "nova-api": "agents.nova_api",
    "nova-conductor": "agents.nova_conductor",
    "nova-scheduler": "agents.nova_scheduler",
    "mysql": "agents.mysql",
    "drbd": "agents.drbd",
    "memcached": "agents.memcached",
    "dashboard": "agents.dashboard",
    "neutron-server": "agents.neutron_server",
    "haproxy": "agents.haproxy",
    "rabbitmq": "agents.rabbitmq",
}


def names() -> list[str]:
    return sorted(AGENTS)


def load(name: str) -> type[Agent]:
    module = __import__(AGENTS[name], fromlist=["AGENT"])
    agent: type[Agent] = module.AGENT
    return agent
