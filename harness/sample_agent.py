"""A small agent that exercises every row of the dispatcher policy in tests.

Its behaviour is chosen by the ``behaviour`` parameter, so each test states
in the environment what it wants the agent to do.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.ocf.actions import Advert, action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError
from agents.ocf.params import Param

BEHAVIOURS = ("ok", "crash", "slow", "missing-software", "stopped", "bad-file")


class SampleAgent(Agent):
    name = "sample"
    version = "0.1"
    shortdesc = 'Sample <agent> & "friends"'
    longdesc = 'Exercises the dispatcher: <tags>, &amp; and "quotes" must survive escaping.'
    params = (
        Param("address", required=True, unique=True, shortdesc="An address <required>"),
        Param("count", "integer", default=3, minimum=1, maximum=10, reloadable=True,
              shortdesc="How many & how often"),
        Param("behaviour", "select", choices=BEHAVIOURS, default="ok", shortdesc="What to do"),
        Param("password", secret=True, shortdesc="A secret"),
        Param("verbose", "boolean", default=False, shortdesc="Log more", reloadable=True),
        Param("old_address", deprecated_for="address", shortdesc="The old name of address"),
    )

    def validate(self) -> list[OCFError]:
        behaviour = self.config.text("behaviour")
        if behaviour == "missing-software":
            return [OCFError(OCF.ERR_INSTALLED, "sampled is not installed")]
        if behaviour == "bad-file":
            return [OCFError(OCF.ERR_CONFIGURED, "config file is unreadable"),
                    OCFError(OCF.ERR_INSTALLED, "sampled is not installed")]
        return []

    def _act(self) -> OCF:
        behaviour = self.config.text("behaviour")
        if self.config.text("password"):
            self.log.info(f"using password {self.config.text('password')}")
        if behaviour == "crash":
            raise RuntimeError(f"boom with {self.config.text('password')}")
        if behaviour == "slow":
            self.deadline.wait_for(lambda: False, "waiting for a service that never answers")
        if behaviour == "stopped":
            return OCF.NOT_RUNNING
        return OCF.SUCCESS

    @action("start", timeout=20)
    def start(self) -> OCF:
        return self._act()

    @action("stop", timeout=20)
    def stop(self) -> OCF:
        return self._act()

    @action("monitor", Advert(timeout=20, interval=10), Advert(timeout=30, interval=60, depth=10))
    def monitor(self) -> OCF:
        return self._act()

    @action("reload-agent", timeout=10)
    def reload_agent(self) -> OCF:
        return OCF.SUCCESS


AGENT = SampleAgent

if __name__ == "__main__":
    SampleAgent.main()
