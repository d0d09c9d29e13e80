"""gRPC interceptors that count, time and trace every call: on both kinds of server and on the orchestrator's channels.

Installed only while the process serves metrics or traces (services.common.metrics.enabled(),
services.common.tracing.enabled()); otherwise a call goes through no code of ours. Health and
reflection are left alone: probes would swamp the figures, and their handlers are synchronous
generators that an asyncio wrapper must not run on the event loop.

A call's status code is read from its context after the handler returns or raises (an abort
sets it); a handler that raised without one counts as UNKNOWN, a cancelled call as CANCELLED.
"""

from __future__ import annotations

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
        if isinstance(error, (GeneratorExit, _cancelled_errors())):
            return "CANCELLED"
        return "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


def _cancelled_errors() -> tuple[type[BaseException], ...]:
    import asyncio

    return (asyncio.CancelledError,)


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
    def behavior(request, context):
        began, error = method.begin(), None
        with tracing.span(method.span_name, tracing.SpanKind.SERVER, _parent(details), method.attributes) as span:
            try:
                return inner(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                code = _server_code(context, error)
                method.end(began, code)
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
    if not (metrics.enabled() or tracing.enabled()):
        return []
    return [AsyncServerTelemetry() if asynchronous else ServerTelemetry()]


# ---- the orchestrator's side: grpc.aio channels to the units ------------------------------------

class _ClientTelemetry:
    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def _method(self, full_method, grpc_type: str) -> _Method:
        method = self._methods.get(full_method)
        if method is None:
            name = full_method.decode() if isinstance(full_method, bytes) else full_method
            method = self._methods[full_method] = _Method(
                name, grpc_type, metrics.CLIENT_STARTED, metrics.CLIENT_HANDLED, metrics.CLIENT_SECONDS)
        return method


def _with_traceparent(details: grpc.aio.ClientCallDetails, span) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    tracing.inject_span(span, carrier)
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                      details.wait_for_ready)


class UnaryUnaryTelemetry(_ClientTelemetry, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        method = self._method(client_call_details.method, "unary")
        began, code = method.begin(), "OK"
        span = tracing.open_span(method.span_name, tracing.SpanKind.CLIENT, method.attributes)
        try:
            call = await continuation(_with_traceparent(client_call_details, span), request)
            return await call
        except grpc.aio.AioRpcError as error:
            code = error.code().name
            raise
        except BaseException as error:
            code = "CANCELLED" if isinstance(error, _cancelled_errors()) else "UNKNOWN"
            raise
        finally:
            method.end(began, code)
            tracing.close_span(span, code)


class UnaryStreamTelemetry(_ClientTelemetry, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        method = self._method(client_call_details.method, "server_stream")
        began = method.begin()
        span = tracing.open_span(method.span_name, tracing.SpanKind.CLIENT, method.attributes)
        try:
            call = await continuation(_with_traceparent(client_call_details, span), request)
        except BaseException:
            method.end(began, "UNKNOWN")
            tracing.close_span(span, "UNKNOWN")
            raise
        return _responses(call, method, began, span)


async def _responses(call, method: _Method, began: float, span):
    code = "OK"
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as error:
        code = error.code().name
        raise
    except BaseException:
        code = "CANCELLED"
        raise
    finally:
        method.end(began, code)
        tracing.close_span(span, code)


def client_interceptors() -> list:
    """The telemetry interceptors for a channel, or none while neither metrics nor traces are on."""
    if not (metrics.enabled() or tracing.enabled()):
        return []
    return [UnaryUnaryTelemetry(), UnaryStreamTelemetry()]
