"""When each piece of one streamed reply arrived, on the bench's monotonic clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

now = time.perf_counter


@dataclass
class Timeline:
    """One request: its start, each token's arrival, its end and whether it succeeded.

    Stand-in replies are numbered tokens `t0 t1 ...`, each ending in a space, so counting the
    spaces in each delta tells which tokens it carried however a relay splits or merges them.
    """

    start: float = field(default_factory=now)
    first: float | None = None
    token_times: list[float] = field(default_factory=list)
    end: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.end is not None

    def text_arrived(self, text: str, at: float | None = None) -> None:
        if not text:
            return
        at = now() if at is None else at
        if self.first is None:
            self.first = at
        self.token_times.extend([at] * text.count(" "))

    def finish(self, error: str = "") -> Timeline:
        self.end = now()
        self.error = error
        return self

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def wall(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def lateness(self, latency_s: float, interval_s: float) -> list[float]:
        """How long after the provider's schedule each token arrived, in seconds."""
        return [at - self.start - latency_s - i * interval_s for i, at in enumerate(self.token_times)]
