"""Logs, metrics and traces as a service sets them up: JSON lines, the settings, and nothing at all while off."""

import json
import logging
import os
import subprocess
import sys

import pytest

from services.common import config, logs, metrics


def test_a_json_line_carries_the_message_and_the_extra_fields():
    record = logging.LogRecord("llmchatlinker.instruction", logging.INFO, __file__, 1, "instruction %s done",
                               ("i-1",), None)
    record.instruction_id, record.status, record.duration_ms = "i-1", "OK", 12.5

    line = json.loads(logs.JsonFormatter().format(record))

    assert line["message"] == "instruction i-1 done" and line["level"] == "INFO"
    assert line["logger"] == "llmchatlinker.instruction" and line["time"].endswith("+00:00")
    assert (line["instruction_id"], line["status"], line["duration_ms"]) == ("i-1", "OK", 12.5)
    assert "args" not in line and "msg" not in line


def test_an_unknown_log_format_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LOG_FORMAT", "xml")
    with pytest.raises(config.SettingError, match="LLMCHATLINKER_LOG_FORMAT"):
        logs.configure_logging()


def test_a_metrics_port_that_is_not_a_port_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_USER_UNIT_METRICS_PORT", "eighty")
    with pytest.raises(config.SettingError, match="LLMCHATLINKER_USER_UNIT_METRICS_PORT"):
        metrics.serve("user_unit")


def test_with_neither_metrics_nor_traces_nothing_is_installed():
    """No endpoint and no metrics port: no SDK imported, no interceptor on servers or channels."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("OTEL_", "LLMCHATLINKER_"))}
    program = (
        "import sys\n"
        "from services.common import telemetry, tracing, interceptors\n"
        "import services.orchestrator.server, services.llm_unit.server\n"
        "telemetry.start('orchestrator')\n"
        "print(tracing.enabled(), interceptors.server_interceptors(True), interceptors.watching(),\n"
        "      'opentelemetry.sdk' in sys.modules)\n"
    )
    answer = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True, text=True, timeout=60)
    assert answer.stdout.split() == ["False", "[]", "False", "False"], answer.stderr


@pytest.fixture
def spans():
    """Tracing on, into an in-memory exporter, for this test only."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.common import tracing

    exporter = InMemorySpanExporter()
    tracing.install("test", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.uninstall()


def test_a_span_continues_the_callers_traceparent_and_passes_its_own_on(spans):
    from services.common import tracing

    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.span("served", tracing.SpanKind.SERVER, {"traceparent": caller}) as served:
        assert tracing.trace_id() == "0af7651916cd43dd8448eb211c80319c"
        call = tracing.open_span("called", tracing.SpanKind.CLIENT)
        sent: dict[str, str] = {}
        tracing.inject_span(call, sent)
        tracing.close_span(call, "UNAVAILABLE")

    finished = {span.name: span for span in spans.get_finished_spans()}
    assert finished["served"].parent.span_id == 0xb7ad6b7169203331
    assert finished["called"].parent.span_id == served.get_span_context().span_id
    assert sent["traceparent"] == f"00-0af7651916cd43dd8448eb211c80319c-{finished['called'].context.span_id:016x}-01"
    assert finished["called"].status.description == "UNAVAILABLE"


def test_a_span_left_by_an_exception_names_its_type_and_not_its_message(spans):
    from services.common import tracing

    with pytest.raises(ValueError), tracing.span("failing"):
        raise ValueError("sk-secret user words")

    (failed,) = spans.get_finished_spans()
    assert failed.status.description == "ValueError" and not failed.events
