"""A small agent whose monitor reports "degraded" (190) while a flag file exists.

The real-cluster test installs it under a provider of its own and runs it with
the installed framework, to see what Pacemaker does with degraded results.
"""

from __future__ import annotations

from agents.ocf.actions import Advert, action
from agents.ocf.agent import Agent
from agents.ocf.codes import OCF, OCFError
from agents.ocf.params import Param
from agents.ocf.proc import run
from agents.ocf.state import StateDir


class DegradedSample(Agent):
    name = "degraded"
    shortdesc = "Reports degraded while a flag file exists"
    longdesc = ("Runs nothing; its monitor answers 190 while the file named by flag exists on the node, "
                "1 when that file says failed; 191 and 8 when promoted.")
    params = (Param("flag", required=True, shortdesc="While this file exists, monitor reports degraded"),)

    @property
    def state(self) -> StateDir:
        return StateDir(self.env.rsctmp, self.name, self.env.instance)

    @property
    def primitive(self) -> str:
        return self.env.instance.split(":", 1)[0]

    def promotion_score(self, score: int | None) -> None:
        """As a promotable clone, every instance may be promoted: the same score everywhere."""
        if not (self.env.meta("promoted_max") or self.env.meta("master_max")):
            return  # not a promotable clone
        value = ["-D"] if score is None else ["-v", str(score)]
        run(["crm_attribute", "-l", "reboot", "-N", self.env.node, "-n", f"master-{self.primitive}", *value],
            self.deadline)

    @action("start", timeout=20)
    def start(self) -> OCF:
        self.state.write("running", "")
        self.promotion_score(10)
        return OCF.SUCCESS

    @action("stop", timeout=20)
    def stop(self) -> OCF:
        self.promotion_score(None)
        self.state.remove("promoted")
        self.state.remove("running")
        return OCF.SUCCESS

    @action("promote", timeout=20)
    def promote(self) -> OCF:
        self.state.write("promoted", "")
        return OCF.SUCCESS

    @action("demote", timeout=20)
    def demote(self) -> OCF:
        self.state.remove("promoted")
        return OCF.SUCCESS

    @action("monitor", Advert(timeout=20, interval=10))
    def monitor(self) -> OCF:
        if self.state.read("running") is None:
            return OCF.NOT_RUNNING
        promoted = self.state.read("promoted") is not None
        try:
            with open(self.config.text("flag"), encoding="utf-8") as flag:
                says = flag.read().strip()
        except FileNotFoundError:
            return OCF.RUNNING_PROMOTED if promoted else OCF.SUCCESS
        if says == "failed":
            raise OCFError(OCF.ERR_GENERIC, "the flag file says failed")
        # How many monitors ran degraded: the test waits for a number of them, not for a time.
        count = f"{self.config.text('flag')}.monitors"
        with open(count, "a", encoding="utf-8") as counter:
            counter.write(".")
        raise OCFError(OCF.DEGRADED_PROMOTED if promoted else OCF.DEGRADED, "the flag file exists")

AGENT = DegradedSample

if __name__ == "__main__":
    DegradedSample.main()
