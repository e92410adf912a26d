"""A small agent whose monitor reports "degraded" (190) while a flag file exists.

The real-cluster test installs it under a provider of its own and runs it with
the installed framework, to see what Pacemaker does with degraded results.
"""

from __future__ import annotations

from agents.ocf.actions import Advert, action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError
from agents.ocf.params import Param
from agents.ocf.state import StateDir


class DegradedSample(Agent):
    name = "degraded"
    shortdesc = "Reports degraded while a flag file exists"
    longdesc = ("Runs nothing; its monitor answers 190 while the file named by flag exists on the node, "
                "1 when that file says failed.")
    params = (Param("flag", required=True, shortdesc="While this file exists, monitor reports degraded"),)

    @property
    def state(self) -> StateDir:
        return StateDir(self.env.rsctmp, self.name, self.env.instance)

    @action("start", timeout=20)
    def start(self) -> OCF:
        self.state.write("running", "")
        return OCF.SUCCESS

    @action("stop", timeout=20)
    def stop(self) -> OCF:
        self.state.remove("running")
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10))
    def monitor(self) -> OCF:
        if self.state.read("running") is None:
            return OCF.NOT_RUNNING
        try:
            with open(self.config.flag, encoding="utf-8") as flag:
                says = flag.read().strip()
        except FileNotFoundError:
            return OCF.SUCCESS
        if says == "failed":
            raise OCFError(OCF.ERR_GENERIC, "the flag file says failed")
        # How many monitors ran degraded: the test waits for a number of them, not for a time.
        self.state.write("degraded-monitors", str(int(self.state.read("degraded-monitors") or 0) + 1))
        raise OCFError(OCF.DEGRADED, "the flag file exists")


AGENT = DegradedSample

if __name__ == "__main__":
    DegradedSample.main()
