"""The one form of a time budget: a `Deadline`, a point on the monotonic clock.

Lambda kills an invocation at its timeout whatever the code is doing, so work that must stop
in time (a job's next destructive item, a GitHub call of an approval, a lock wait, a connect
retry) is handed a Deadline and asks it how long is left, instead of carrying a bare
`time.monotonic()` value whose meaning a reader has to guess. Durations (a configured wait, a
retry window) stay plain seconds; the code that starts the clock turns one into a Deadline.

Pure: no I/O, no clients. The clock is injectable so tests can move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MonotonicClock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """A time budget ending at `ends_at` on `clock`. Jobs check `has(seconds)` before each
    destructive item and stop cleanly when one more item might not finish."""

    ends_at: float  # a value of `clock`
    clock: MonotonicClock = field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def after(cls, seconds: float, *, clock: MonotonicClock = time.monotonic) -> Deadline:
        """`seconds` from now (zero or less: already spent)."""
        return cls(clock() + seconds, clock)

    @classmethod
    def from_lambda(
        cls, context: Any, reserve_seconds: float = 30.0, *, clock: MonotonicClock = time.monotonic
    ) -> Deadline:
        """The invocation's remaining time minus a reserve for finishing up (never before
        now). Raises what `context.get_remaining_time_in_millis()` raises, or ValueError /
        TypeError when its answer is not a number."""
        remaining_ms = float(context.get_remaining_time_in_millis())
        return cls.after(max(0.0, remaining_ms / 1000.0 - reserve_seconds), clock=clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.ends_at - self.clock())

    def has(self, seconds: float) -> bool:
        """At least `seconds` left."""
        return self.remaining() >= seconds

    def expired(self) -> bool:
        """No time left at all."""
        return self.clock() >= self.ends_at

    def sooner(self, other: Deadline | None) -> Deadline:
        """Whichever of the two ends first (`self` when `other` is None or ends together).
        Points on two different clocks cannot be compared: ValueError."""
        if other is None:
            return self
        if other.clock is not self.clock:
            raise ValueError("the deadlines read different clocks")
        return self if self.ends_at <= other.ends_at else other
