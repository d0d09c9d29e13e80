"""What stands between generations and a provider: its concurrency gate and its circuit breaker.

Both live in the memory of one llm_unit replica, per provider id. A gate exists only for a
provider with max_in_flight set, and a closed breaker costs a dictionary lookup, so a generation
to a healthy, unbounded provider pays nearly nothing for them.
"""

import asyncio
import collections
import dataclasses
import enum
import time
from collections.abc import Callable

from services.llm_unit import errors, service


class Admission(enum.Enum):
    ALLOWED = "allowed"
    # Allowed as the one probe of a half-open breaker: its outcome must be reported.
    PROBE = "probe"
    REFUSED = "refused"


class Circuit(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass
class _BreakerState:
    failures: int = 0
    last_reason: str = ""
    opened_at: float | None = None
    probing: bool = False


class Breakers:
    """One breaker per provider: `threshold` failed generations in a row open it; while open the
    provider is skipped; after `cooldown` seconds one generation goes as a probe (half open) and its
    outcome closes the breaker or opens it again. threshold 0: never opens."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._states: dict[str, _BreakerState] = {}
        self._names: dict[str, str] = {}  # provider id -> name, for the metrics

    def admit(self, provider: service.Provider) -> Admission:
        """Whether a request may go to the provider now. A PROBE must report its outcome (succeeded,
        failed or released)."""
        self._names[provider.provider_id] = provider.name
        state = self._states.get(provider.provider_id)
        if state is None or state.opened_at is None:
            return Admission.ALLOWED
        if state.probing or self._clock() - state.opened_at < self._cooldown:
            return Admission.REFUSED
        state.probing = True
        return Admission.PROBE

    def refusal(self, provider: service.Provider) -> errors.DomainError:
        state = self._states[provider.provider_id]
        left = max(0.0, (state.opened_at or 0.0) + self._cooldown - self._clock())
        return errors.provider_circuit_open(provider.name, state.failures, state.last_reason, left)

    def succeeded(self, provider_id: str) -> None:
        if provider_id in self._states:
            del self._states[provider_id]

    def failed(self, provider_id: str, reason: str) -> None:
        if self._threshold <= 0:
            return
        state = self._states.setdefault(provider_id, _BreakerState())
        state.failures += 1
        state.last_reason = reason
        if state.probing or state.failures >= self._threshold:
            state.opened_at = self._clock()
        state.probing = False

    def released(self, provider_id: str) -> None:
        """A probe that ended with no verdict (cancelled, or a failure that says nothing of the
        provider's health) hands the probe to the next generation."""
        state = self._states.get(provider_id)
        if state is not None:
            state.probing = False

    def circuits(self) -> list[tuple[str, Circuit]]:
        """(provider name, circuit) of each provider that has failed lately (the others are closed)."""
        return [(self._names.get(provider_id, provider_id), self.state(provider_id)[0]) for provider_id in list(self._states)]

    def state(self, provider_id: str) -> tuple[Circuit, float | None]:
        """The circuit, and (when open) the time.time() at which the next probe may go."""
        state = self._states.get(provider_id)
        if state is None or state.opened_at is None:
            return Circuit.CLOSED, None
        left = state.opened_at + self._cooldown - self._clock()
        if left > 0:
            return Circuit.OPEN, time.time() + left
        return Circuit.HALF_OPEN, None


class Gate:
    """At most `limit` holders at once; later comers wait in order of arrival, at most `max_waiting`
    of them. The limits are the provider's latest, set at each acquire."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, provider: service.Provider, deadline: float, budget: float) -> None:
        limit = provider.max_in_flight
        if self.in_flight < limit and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= provider.max_waiting:
            raise errors.provider_busy(provider.name, self.in_flight, len(self._waiters))
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter  # release() hands its slot over: in_flight already counts this holder
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot came just as the wait ended: pass it on
            else:
                self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                raise errors.generation_timeout(provider.name, budget) from None
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1


class Gates:
    """A gate per provider that has max_in_flight set."""

    def __init__(self) -> None:
        self._gates: dict[str, Gate] = {}

    def for_provider(self, provider: service.Provider) -> Gate | None:
        if provider.max_in_flight <= 0:
            # A limit removed: the generations holding or waiting for the old gate's slots still
            # release them into it, so its waiters are not stranded.
            self._gates.pop(provider.provider_id, None)
            return None
        return self._gates.setdefault(provider.provider_id, Gate())
