"""What a generation shows an operator: time to first token, total time, tokens, provider errors by kind, open streams, and the provider request's span.

Labelled by provider and model name: an operator's own short list. Past MAX_SERIES pairs the
rest are counted as ("other", "other"), so a flood of new providers cannot flood the registry.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from services.common import tracing
from services.common.errors import DomainError
from services.llm_unit.traffic import Circuit

MAX_SERIES = 100
OTHER = "other"
# Seconds to the first token: a local model answers in milliseconds, a loaded one in tens of seconds.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
# Seconds for a whole reply, up to the provider's deadline (120 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# Provider failure reasons (services/llm_unit/errors.py) -> the kind an operator filters on.
ERROR_KINDS = {
    "PROVIDER_UNREACHABLE": "refused",
    "GENERATION_TIMEOUT": "timeout",
    "PROVIDER_REJECTED_KEY": "4xx",
    "PROVIDER_RATE_LIMITED": "4xx",
    "PROVIDER_REJECTED_REQUEST": "4xx",
    "PROVIDER_ERROR": "5xx",
    "PROVIDER_BAD_RESPONSE": "malformed",
    "PROVIDER_STREAM_CUT": "cut",
}
_LABELS = ("provider", "model")

GENERATIONS = Counter("llmchatlinker_generations", "Generations ended, by provider, model and outcome (ok, "
                      "cancelled, or a provider error's kind).", (*_LABELS, "outcome"))
FIRST_TOKEN = Histogram("llmchatlinker_generation_time_to_first_token_seconds", "Time from the provider request "
                        "to the first content token.", _LABELS, buckets=FIRST_TOKEN_BUCKETS)
DURATION = Histogram("llmchatlinker_generation_duration_seconds", "Time from the provider request to the "
                     "reply's end, of replies that ended well.", _LABELS, buckets=DURATION_BUCKETS)
TOKENS = Counter("llmchatlinker_generation_tokens", "Tokens the providers counted, by type: input (the prompt) "
                 "or output (the reply).", (*_LABELS, "type"))
PROVIDER_ERRORS = Counter("llmchatlinker_provider_errors", "Provider requests that failed, by kind: refused "
                          "(unreachable), timeout, 4xx, 5xx, malformed, cut (the stream ended early).",
                          (*_LABELS, "kind"))
STREAMS_OPEN = Gauge("llmchatlinker_generation_streams_open", "Provider replies being streamed now.")

_series: set[tuple[str, str]] = set()


def _labels(provider: str, model: str) -> tuple[str, str]:
    pair = (provider, model)
    if pair in _series:
        return pair
    if len(_series) < MAX_SERIES:
        _series.add(pair)
        return pair
    return OTHER, OTHER


class Watch:
    """One generation, from the provider request to the reply's end: `with Watch(...) as watch:`,
    `watch.first_token()` at each batch of deltas, `watch.finished(prompt, completion)` at the end.
    Inside the block the provider request's span is current, so its HTTP request carries it."""

    __slots__ = ("_labels", "_began", "_first", "_finished", "_span", "_endpoint")

    def __init__(self, provider: str, model: str, endpoint: str):
        self._labels = _labels(provider, model)
        self._endpoint = endpoint
        self._first = self._finished = False
        self._began = 0.0
        self._span = None

    def __enter__(self) -> "Watch":
        STREAMS_OPEN.inc()
        self._began = time.perf_counter()
        if tracing.enabled():
            provider, model = self._labels
            self._span = tracing.start(f"POST {provider}", tracing.SpanKind.CLIENT, attributes={
                "http.request.method": "POST", "server.address": _host(self._endpoint),
                "gen_ai.system": provider, "gen_ai.request.model": model})
        return self

    def first_token(self) -> None:
        if not self._first:
            self._first = True
            FIRST_TOKEN.labels(*self._labels).observe(time.perf_counter() - self._began)

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None:
        self._finished = True
        DURATION.labels(*self._labels).observe(time.perf_counter() - self._began)
        TOKENS.labels(*self._labels, "input").inc(prompt_tokens)
        TOKENS.labels(*self._labels, "output").inc(completion_tokens)

    def __exit__(self, kind, error, _traceback) -> None:
        STREAMS_OPEN.dec()
        outcome = "ok"
        if error is not None or not self._finished:
            outcome = ERROR_KINDS.get(error.reason, "error") if isinstance(error, DomainError) else "cancelled"
            if isinstance(error, DomainError) and error.reason in ERROR_KINDS:
                PROVIDER_ERRORS.labels(*self._labels, outcome).inc()
            elif error is not None and not isinstance(error, (asyncio.CancelledError, GeneratorExit)):
                outcome = "error"
        GENERATIONS.labels(*self._labels, outcome).inc()
        tracing.finish(self._span, None if outcome == "ok" else outcome)


def _host(endpoint: str) -> str:
    """The provider's host (no path or query, which may carry a key)."""
    rest = endpoint.partition("://")[2]
    return rest.split("/", 1)[0].rpartition("@")[2]


class _Circuits:
    """Scraped, not kept: each failing provider's breaker, 1 while open or probing, 0 when closed
    again (providers that have not failed are left out, so the series stay few)."""

    def __init__(self) -> None:
        self.watched: weakref.WeakSet = weakref.WeakSet()  # the Breakers of this process's servers

    def collect(self):
        family = GaugeMetricFamily("llmchatlinker_provider_circuit_open",
                                   "1 while a provider's circuit breaker is open or half open (its generations "
                                   "skip it), by provider; only providers that failed lately.", labels=["provider"])
        circuits = {name: circuit for breakers in list(self.watched) for name, circuit in breakers.circuits()}
        for name, circuit in list(circuits.items())[:MAX_SERIES]:
            family.add_metric([name], 0.0 if circuit is Circuit.CLOSED else 1.0)
        yield family


_circuits: _Circuits | None = None


def watch_breakers(breakers) -> None:
    """Exports the breakers' states (when metrics are on); the collector is registered once."""
    global _circuits
    if _circuits is None:
        _circuits = _Circuits()
        REGISTRY.register(_circuits)
    _circuits.watched.add(breakers)
