"""gRPC calls counted, timed and traced: an interceptor on both kinds of server, a stub wrapper on the orchestrator's calls to the units.

Installed only while the process serves metrics or traces (`watching()`); otherwise a call goes
through no code of ours. Health and reflection are left alone: probes would swamp the figures, and
their handlers are synchronous generators that an asyncio wrapper must not run on the event loop.
On a thread-pool server (the database units) each call's time in SQL statements is added up too.

A call's status code is read from its context after the handler returns or raises (an abort
sets it); a handler that raised without one counts as UNKNOWN, a cancelled call as CANCELLED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from services.common import metrics, tracing
from services.common.admission import OPEN_SERVICES

_SHAPES = {
    (False, False): ("unary", "unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("server_stream", "unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("client_stream", "stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("bidi_stream", "stream_stream", grpc.stream_stream_rpc_method_handler),
}


class _Method:
    """One method's metric children (bound once) and its span name."""

    def __init__(self, full_method: str, grpc_type: str, started, handled, seconds):
        service, method = metrics.split_method(full_method)
        self.labels = (grpc_type, service, method)
        self.span_name = f"{service}/{method}"
        self.attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        self.on = metrics.enabled()
        if self.on:
            self.started = started.labels(*self.labels)
            self.seconds = seconds.labels(*self.labels)
        self._handled_family = handled
        self._handled: dict[str, object] = {}

    def begin(self) -> float:
        if self.on:
            self.started.inc()
        return time.perf_counter()

    def end(self, began: float, code: str) -> None:
        if not self.on:
            return
        self.seconds.observe(time.perf_counter() - began)
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = self._handled_family.labels(*self.labels, code)
        handled.inc()


def _server_code(context, error: BaseException | None) -> str:
    code = context.code()
    if code is None or code == grpc.StatusCode.OK:
        if error is None:
            return "OK"
        if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
            return "CANCELLED"
        return "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def _parent(details: grpc.HandlerCallDetails) -> dict | None:
    """The traceparent the caller sent, as a carrier (only looked at while tracing is on)."""
    if not tracing.enabled():
        return None
    return {key: value for key, value in details.invocation_metadata or () if key in ("traceparent", "tracestate")}


class _ServerTelemetry:
    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def _method(self, details: grpc.HandlerCallDetails, grpc_type: str) -> _Method:
        method = self._methods.get(details.method)
        if method is None:
            method = self._methods[details.method] = _Method(
                details.method, grpc_type, metrics.SERVER_STARTED, metrics.SERVER_HANDLED, metrics.SERVER_SECONDS)
        return method

    def _wrap(self, handler, details: grpc.HandlerCallDetails, asynchronous: bool):
        if handler is None or details.method.startswith(OPEN_SERVICES):
            return handler
        grpc_type, attribute, make = _SHAPES[(handler.request_streaming, handler.response_streaming)]
        inner = getattr(handler, attribute)
        method = self._method(details, grpc_type)
        wrap = (_async_stream if handler.response_streaming else _async_unary) if asynchronous else (
            _sync_stream if handler.response_streaming else _sync_unary)
        return make(wrap(inner, method, details), request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


class ServerTelemetry(_ServerTelemetry, grpc.ServerInterceptor):
    """For a thread-pool server (grpc.server)."""

    def intercept_service(self, continuation, handler_call_details):
        return self._wrap(continuation(handler_call_details), handler_call_details, asynchronous=False)


class AsyncServerTelemetry(_ServerTelemetry, grpc.aio.ServerInterceptor):
    """For an asyncio server (grpc.aio.server)."""

    async def intercept_service(self, continuation, handler_call_details):
        return self._wrap(await continuation(handler_call_details), handler_call_details, asynchronous=True)


def _sync_unary(inner: Callable, method: _Method, details):
    _, service, name = method.labels
    counting = method.on

    def behavior(request, context):
        began, error = method.begin(), None
        if counting:
            metrics.call_began()
        with tracing.span(method.span_name, tracing.SpanKind.SERVER, _parent(details), method.attributes) as span:
            try:
                return inner(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                code = _server_code(context, error)
                method.end(began, code)
                if counting:
                    metrics.call_ended(service, name)
                _mark(span, code)
    return behavior


def _sync_stream(inner: Callable, method: _Method, details):
    def behavior(request, context):
        began, error = method.begin(), None
        with tracing.span(method.span_name, tracing.SpanKind.SERVER, _parent(details), method.attributes) as span:
            try:
                yield from inner(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                code = _server_code(context, error)
                method.end(began, code)
                _mark(span, code)
    return behavior


def _async_unary(inner: Callable, method: _Method, details):
    async def behavior(request, context):
        began, error = method.begin(), None
        with tracing.span(method.span_name, tracing.SpanKind.SERVER, _parent(details), method.attributes) as span:
            try:
                return await inner(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                code = _server_code(context, error)
                method.end(began, code)
                _mark(span, code)
    return behavior


def _async_stream(inner: Callable, method: _Method, details):
    async def behavior(request, context):
        began, error = method.begin(), None
        # Current for the whole stream, so what the handler calls (a provider) is its child.
        started = tracing.start(method.span_name, tracing.SpanKind.SERVER, _parent(details), method.attributes)
        code = "OK"
        try:
            async for response in inner(request, context):
                yield response
        except BaseException as raised:
            error = raised
            raise
        finally:
            code = _server_code(context, error)
            method.end(began, code)
            tracing.finish(started, None if code == "OK" else code)
    return behavior


def _mark(span, code: str) -> None:
    if span is not None:
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            span.set_status(tracing.trace.Status(tracing.trace.StatusCode.ERROR, code))


def server_interceptors(asynchronous: bool) -> list:
    """The telemetry interceptor for a server, or none while neither metrics nor traces are on."""
    if not watching():
        return []
    return [AsyncServerTelemetry() if asynchronous else ServerTelemetry()]


# ---- the orchestrator's side: its calls to the units ------------------------------------------
# Not a grpc.aio client interceptor: those run every call in a task of its own and every streamed
# message through two more async iterators, which cost 10 % of the suite's throughput and a quarter
# more CPU per relayed token (bench/observability.py). A stub wrapper that reads the status in the
# call's done callback costs a function call and a callback.

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class WatchedStub:
    """A unit stub whose every call is counted, timed and traced as a client call, and carries
    `metadata` (the internal token) and, while tracing, its span's traceparent. Each method is
    bound once, on first use."""

    def __init__(self, stub, service: str, metadata: tuple = ()):
        self._stub = stub
        self._service = service
        self._metadata = tuple(metadata)

    def __getattr__(self, method_name: str):
        multicallable = getattr(self._stub, method_name)
        streaming = isinstance(multicallable, grpc.aio.UnaryStreamMultiCallable)
        method = _Method(f"/{self._service}/{method_name}", "server_stream" if streaming else "unary",
                         metrics.CLIENT_STARTED, metrics.CLIENT_HANDLED, metrics.CLIENT_SECONDS)
        token = self._metadata

        def call(request, **options):
            began = method.begin()
            span = tracing.open_span(method.span_name, tracing.SpanKind.CLIENT, method.attributes)
            metadata = tuple(options.pop("metadata", None) or ()) + token
            if span is not None:
                carrier: dict[str, str] = {}
                tracing.inject_span(span, carrier)
                metadata += tuple(carrier.items())
            rpc = multicallable(request, metadata=metadata or None, **options)
            rpc.add_done_callback(lambda done: _client_done(done, method, began, span))
            return rpc

        call.__name__ = method_name
        setattr(self, method_name, call)
        return call


def _client_done(rpc, method: _Method, began: float, span) -> None:
    try:
        code = _CODE_NAMES.get(rpc._cython_call._status.code(), "UNKNOWN")  # set once the call is done
    except AttributeError:
        code = "CANCELLED" if rpc.cancelled() else "UNKNOWN"
    method.end(began, code)
    tracing.close_span(span, code)


def watching() -> bool:
    """Whether calls are to be counted or traced at all (else no wrapper and no interceptor)."""
    return metrics.enabled() or tracing.enabled()
