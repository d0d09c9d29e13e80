"""A local OTLP/HTTP trace receiver for tests: what a collector at OTEL_EXPORTER_OTLP_ENDPOINT would be sent."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse


@dataclasses.dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict
    start_ns: int = 0  # Unix time
    end_ns: int = 0


class OtlpReceiver:
    """Listens on 127.0.0.1 (a free port) for POST /v1/traces (protobuf) and keeps every span."""

    def __init__(self, keep: bool = True, port: int = 0) -> None:
        """With keep=False the spans are only counted in exports and bytes (a benchmark's collector)."""
        self.spans: list[Span] = []
        self.received = 0
        self.exports = self.received_bytes = 0
        self._keep = keep
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/v1/traces":
                    receiver._take(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:  # noqa: N802 - readiness
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, body: bytes) -> None:
        if not self._keep:  # a benchmark's collector: not even decoded
            with self._lock:
                self.exports += 1
                self.received_bytes += len(body)
            return
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    found.append(Span(service, span.name, span.kind, span.trace_id.hex(), span.span_id.hex(),
                                      span.parent_span_id.hex(), attributes, span.start_time_unix_nano,
                                      span.end_time_unix_nano))
        with self._lock:
            self.spans.extend(found)
            self.received += len(found)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Span]:
        """The spans once `predicate(spans)` holds; TimeoutError with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(spans)} spans, not the ones awaited")
            time.sleep(0.1)


def _value(value) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def main() -> None:
    """`python -m testkit.otlp --port N`: a collector in a process of its own that counts exports and
    drops them undecoded (for benchmarks: it should cost the measured machine next to nothing)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m testkit.otlp", description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    receiver = OtlpReceiver(keep=False, port=args.port).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        pass
    receiver.stop()
    print(f"exports received: {receiver.exports} ({receiver.received_bytes:,} bytes)", flush=True)


if __name__ == "__main__":
    main()
