"""A test-only agent whose declarations exercise crmtool's parameter checks."""

from __future__ import annotations

from agents.ocf.actions import action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF
from agents.ocf.params import Param


class LintAgent(Agent):
    name = "crmtool-lint"
    shortdesc = "parameter declarations for crmtool's checks"
    params = (
        Param("address", shortdesc="an address", required=True),
        Param("port", "integer", shortdesc="a port", default=8080, minimum=1, maximum=65535),
        Param("mode", "select", shortdesc="a mode", default="fast", choices=("fast", "safe")),
        Param("addr", shortdesc="the old name of address", deprecated_for="address"),
        Param("password", shortdesc="a secret", secret=True),
        Param("credentials", shortdesc="a file holding the password"),
    )

    @action("start")
    def start(self) -> OCF:
        return OCF.SUCCESS

    @action("stop")
    def stop(self) -> OCF:
        return OCF.SUCCESS

    @action("monitor")
    def monitor(self) -> OCF:
        return OCF.NOT_RUNNING


AGENT = LintAgent
