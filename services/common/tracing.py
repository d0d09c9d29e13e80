"""OpenTelemetry traces: on when OTEL_EXPORTER_OTLP_ENDPOINT is set, a true no-op when it is not.

Only the OpenTelemetry API's context and propagation are imported up front; the SDK and the OTLP
exporter are imported by `configure()` and only when the standard endpoint variable is set. While
tracing is off the servers and channels install no tracing interceptor and the hooks below return
at their first line, so no span object is ever made.

The trace context travels as W3C `traceparent` (and `tracestate`): in gRPC metadata between the
services, in the AMQP message headers between a front door (or a legacy client) and the
orchestrator that runs the instruction, and in the HTTP headers of a provider request.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

# The standard variables (OpenTelemetry's exporter spec): either turns tracing on.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
TRACEPARENT = "traceparent"
SpanKind = trace.SpanKind
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider = None


def enabled() -> bool:
    return _tracer is not None


def configure(service: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Installs the SDK with a batching OTLP/HTTP exporter when the endpoint is set (and
    OTEL_SDK_DISABLED is not true); whether it did. The exporter reads the other OTEL_EXPORTER_OTLP_*
    variables (headers, timeout) itself, the SDK OTEL_TRACES_SAMPLER (default: every trace) and
    OTEL_BSP_* (batching)."""
    environ = os.environ if environ is None else environ
    endpoint = next((environ[name].strip() for name in ENDPOINT_VARIABLES if environ.get(name, "").strip()), "")
    if not endpoint or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    install(service, BatchSpanProcessor(OTLPSpanExporter()))
    scheme, _, rest = endpoint.partition("://")
    log.info("tracing: spans of %s go to %s://%s over OTLP/HTTP", service, scheme,
             rest.split("/", 1)[0].rpartition("@")[2])  # no path, no credentials
    return True


def install(service: str, processor) -> None:
    """Sends every span of this process to `processor` (a SpanProcessor); tests pass one over an
    in-memory exporter. The provider is this module's own, not the global one, so a test can
    install another."""
    global _tracer, _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("llmchatlinker")


def uninstall() -> None:
    """Tracing off again (tests): spans still open end unrecorded by anyone."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def flush(timeout_ms: int = 5_000) -> None:
    """Exports the spans still batched (at shutdown)."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


@contextlib.contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, parent: MutableMapping | None = None,
         attributes: dict | None = None) -> Iterator[trace.Span | None]:
    """A span, current inside the block, child of `parent`'s traceparent (a carrier: metadata or
    headers) when given, else of the current span; yields None and does nothing while tracing is off."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    # start_span and attach rather than start_as_current_span: two context managers fewer per span.
    context = _PROPAGATOR.extract(parent) if parent else None
    current = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(current))
    try:
        yield current
    except BaseException as error:
        if current.is_recording() and current.status.status_code is trace.StatusCode.UNSET:
            current.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))  # no message: no data
        raise
    finally:
        current.end()
        _detach(token)


def start(name: str, kind: SpanKind, parent: MutableMapping | None = None,
          attributes: dict | None = None) -> tuple[trace.Span, object] | None:
    """A span made current until `finish()`: for code that cannot hold a `with` block open (an
    interceptor around a streamed reply). None while tracing is off."""
    tracer = _tracer
    if tracer is None:
        return None
    context = _PROPAGATOR.extract(parent) if parent else None
    opened = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
    return opened, otel_context.attach(trace.set_span_in_context(opened))


def finish(started: tuple[trace.Span, object] | None, error_code: str | None = None) -> None:
    """Ends a span from `start()`, marked as an error with `error_code` when given."""
    if started is None:
        return
    opened, token = started
    if error_code:
        opened.set_status(trace.Status(trace.StatusCode.ERROR, error_code))
    opened.end()
    _detach(token)


def _detach(token: object) -> None:
    # A streamed reply's generator may be closed in another context than the one it attached to;
    # then there is nothing to restore, and the API's detach() would log that as an error.
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if runtime is None:
        otel_context.detach(token)
        return
    with contextlib.suppress(ValueError, RuntimeError):
        runtime.detach(token)


def open_span(name: str, kind: SpanKind, attributes: dict | None = None) -> trace.Span | None:
    """A child of the current span that is not made current (a client call's: nothing runs
    inside it but the call); None while tracing is off. End it with `close_span()`."""
    tracer = _tracer
    return None if tracer is None else tracer.start_span(name, kind=kind, attributes=attributes)


def close_span(opened: trace.Span | None, code: str = "OK") -> None:
    if opened is None:
        return
    if code != "OK":
        opened.set_status(trace.Status(trace.StatusCode.ERROR, code))
    opened.end()


def inject_span(opened: trace.Span | None, carrier: MutableMapping[str, str]) -> None:
    """Adds `opened`'s traceparent to `carrier` (nothing for None)."""
    if opened is not None:
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(opened))


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Adds the current span's traceparent to `carrier` (headers, metadata); unchanged while off."""
    if _tracer is not None:
        _PROPAGATOR.inject(carrier)
    return carrier


def trace_id() -> str:
    """The current trace's id (32 hex digits), or "" outside a recorded span."""
    if _tracer is None:
        return ""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
