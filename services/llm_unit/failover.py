"""Retries and fallbacks of one generation, up to its first token: the suite's only retry loop
around a provider call.

A failure before the first token (connection refused, 429, 5xx, a stream cut before any text) is
retried on the same model with back-off that honours `Retry-After`, within the generation's
deadline; then the model's fallbacks are tried in order, each with its own retries. Once a
token has gone to the caller nothing is retried: the caller has seen output. Providers whose
breaker is open are skipped at once, and a provider's concurrency gate is waited for within the
deadline. Only when every option has failed does the caller see a failure (the last one, its
message naming those before it); the orchestrator's outage rule starts from there.
"""

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence

from services.common.errors import DomainError
from services.llm_unit import errors, service
from services.llm_unit.providers import Final, ProviderClient, Reply
from services.llm_unit.traffic import Admission, Breakers, Gate, Gates

log = logging.getLogger(__name__)

# Failures worth another try on the same model: the provider may answer next time.
RETRYABLE = frozenset({"PROVIDER_UNREACHABLE", "PROVIDER_RATE_LIMITED", "PROVIDER_ERROR", "PROVIDER_STREAM_CUT"})
# Failures that count against a provider's breaker: the same (once per generation, not per try).
UNHEALTHY = RETRYABLE
# Failures that end the generation at once: its time is spent, no other model can use it.
FINAL = frozenset({"GENERATION_TIMEOUT"})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """`retries` more tries per model after the first; back-off `backoff` seconds doubling per try,
    at most `backoff_cap`, with jitter (half to all of it); a provider's Retry-After is waited
    for in full when longer."""

    retries: int = 2
    backoff: float = 0.25
    backoff_cap: float = 8.0

    def delay(self, retry: int, retry_after: float | None, rng: Callable[[], float] = random.random) -> float:
        wait = min(self.backoff_cap, self.backoff * 2 ** retry) * (0.5 + rng() / 2)
        return max(wait, retry_after or 0.0)


Candidate = tuple[service.Llm, service.Provider]


class Answer:
    """A reply that has begun: iterate for batches of deltas, then final(). `llm` and `provider`
    are the model that answered and its provider; `attempts` the requests it took."""

    def __init__(self, reply: Reply, first: list[str], llm: service.Llm, provider: service.Provider,
                 attempts: int, slot: "_Slot") -> None:
        self._reply = reply
        self._slot = slot
        self._first: list[str] | None = first
        self.llm = llm
        self.provider = provider
        self.attempts = attempts

    def __aiter__(self) -> "Answer":
        return self

    async def __anext__(self) -> list[str]:
        if self._first:
            first, self._first = self._first, None
            return first
        self._first = None
        return await self._reply.__anext__()

    def final(self) -> Final:
        return self._reply.final()

    def abort(self, *ignored: object) -> None:
        """For a task done-callback: hang up if the reply is still open, and free its gate slot."""
        self._reply.abort(*ignored)
        self._slot.release()


class _Slot:
    """A slot of a provider's gate (or none), released once, whoever releases it first."""

    def __init__(self, gate: Gate | None) -> None:
        self._gate = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release()


class Failover:
    def __init__(self, client: ProviderClient, policy: RetryPolicy, breakers: Breakers, gates: Gates) -> None:
        self._client = client
        self._policy = policy
        self._breakers = breakers
        self._gates = gates

    @contextlib.asynccontextmanager
    async def reply(self, candidates: AsyncIterator[Candidate], messages: Sequence[service.Message],
                    deadline: float, budget: float) -> AsyncIterator[Answer]:
        """The first candidate (model, provider) that begins a reply; leaving the block closes it."""
        loop = asyncio.get_running_loop()
        tries: list[tuple[str, str, str]] = []  # (model, provider, reason)
        last: DomainError | None = None
        attempts = 0
        async for llm, provider in candidates:
            unhealthy = ""  # this model's last failure that counts against its provider, if any
            for retry in range(self._policy.retries + 1):
                admission = self._breakers.admit(provider)
                if admission is Admission.REFUSED:
                    if retry == 0:  # else the breaker opened during this model's tries: theirs is the failure
                        last = self._breakers.refusal(provider)
                        tries.append((llm.name, provider.name, last.reason))
                    break
                probe = admission is Admission.PROBE
                attempts += 1
                try:
                    stack, reply, first, slot = await self._begin(llm, provider, messages, deadline, budget)
                except DomainError as error:
                    last, unhealthy = error, error.reason if error.reason in UNHEALTHY else ""
                    tries.append((llm.name, provider.name, error.reason))
                    if probe:  # the probe's verdict, at once: open again, or hand the probe on
                        if unhealthy:
                            self._breakers.failed(provider.provider_id, unhealthy)
                        else:
                            self._breakers.released(provider.provider_id)
                        unhealthy = ""
                    if error.reason in FINAL:
                        self._count(provider, unhealthy)
                        raise errors.with_earlier_failures(error, tries) from None
                    if error.reason not in RETRYABLE or retry == self._policy.retries:
                        break
                    wait = self._policy.delay(retry, getattr(error, "retry_after", None))
                    if loop.time() + wait >= deadline:
                        break  # no time to wait for this model: the next one may answer at once
                    log.info("generation: %s failed (%s); trying again in %.2f s", llm.name, error.reason, wait)
                    await asyncio.sleep(wait)
                    continue
                except BaseException:  # cancelled, or a bug: no verdict on the provider
                    if probe:
                        self._breakers.released(provider.provider_id)
                    raise
                self._breakers.succeeded(provider.provider_id)
                async with stack:
                    yield Answer(reply, first, llm, provider, attempts, slot)
                return
            self._count(provider, unhealthy)
        assert last is not None, "a generation has at least one candidate"
        raise errors.with_earlier_failures(last, tries)


    async def _begin(self, llm: service.Llm, provider: service.Provider, messages: Sequence[service.Message],
                     deadline: float, budget: float) -> tuple[contextlib.AsyncExitStack, Reply, list[str], _Slot]:
        """One try: a slot of the provider's gate, the request, and the reply's first text. The stack
        holds what to close (the reply, then the slot) once the answer is over; on a failure it is
        closed here."""
        stack = contextlib.AsyncExitStack()
        slot = _Slot(None)
        try:
            gate = self._gates.for_provider(provider)
            if gate is not None:
                await gate.acquire(provider, deadline, budget)
                slot = _Slot(gate)
                stack.callback(slot.release)
            reply = await stack.enter_async_context(self._client.reply(provider, llm.name, messages, deadline, budget))
            first = await _first_deltas(reply)
        except BaseException as error:
            await stack.__aexit__(type(error), error, error.__traceback__)
            raise
        return stack, reply, first, slot

    def _count(self, provider: service.Provider, unhealthy: str) -> None:
        """A model whose tries all failed counts once against its provider's breaker (when the
        failures say the provider is unwell), however many tries it took."""
        if unhealthy:
            self._breakers.failed(provider.provider_id, unhealthy)


async def _first_deltas(reply: Reply) -> list[str]:
    """Reads until the reply has text (or ends): the moment after which nothing is retried."""
    async for deltas in reply:
        if deltas:
            return deltas
    return []
