"""The time budget of one action, taken from Pacemaker's operation timeout.

Every wait and every subprocess of an action asks its deadline how much time
is left, so an agent returns a real answer before the executor kills it.
"""

from __future__ import annotations

import time

from agents.ocf.codes import DeadlineExceeded

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Time kept back for the dispatcher to log and exit after the work is cut off.
EXIT_MARGIN_S = 0.5
POLL_S = 0.02


class Deadline:
    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.budget_s = budget_s
        self.started = clock()
        self.expires = self.started + budget_s

    @classmethod
    def from_timeout_ms(cls, timeout_ms: int) -> Deadline:
        """A budget a little shorter than the executor's timeout for the operation."""
        timeout_s = timeout_ms / 1000.0
        margin = min(EXIT_MARGIN_S, timeout_s * 0.1)
        return cls(max(timeout_s - margin, 0.0))

    def remaining(self) -> float:
        return max(self.expires - self._clock(), 0.0)

    def elapsed(self) -> float:
        return self._clock() - self.started

    def expired(self) -> bool:
        return self._clock() >= self.expires

    def check(self, what: str) -> None:
        if self.expired():
            raise DeadlineExceeded(what)

    def sleep(self, seconds: float) -> None:
        """Sleep at most ``seconds`` and never past the deadline."""
        time.sleep(min(seconds, self.remaining()))

    def timeout(self, cap: float | None = None) -> float:
        """Seconds a blocking call may take: what is left, optionally capped."""
        left = self.remaining()
        return left if cap is None else min(left, cap)

    def wait_for(
        self, predicate: Callable[[], bool], what: str, poll_s: float = POLL_S, cap: float | None = None
    ) -> None:
        """Poll ``predicate`` until true; raise DeadlineExceeded when time runs out.

        ``cap`` bounds the wait below the deadline (seconds from now).
        """
        until = self._clock() + (self.remaining() if cap is None else min(cap, self.remaining()))
        while True:
            if predicate():
                return
            now = self._clock()
            if now >= until:
                raise DeadlineExceeded(what)
            time.sleep(min(poll_s, until - now))
