"""What an operator sees of the suite: each service's metrics after a known workload, one trace across
every service an instruction touches (submitted over gRPC or AMQP with a traceparent), and logs that
at DEBUG carry neither a key nor a user's input nor a model's output.

One `llmchatlinker up` for the module, on RabbitMQ, with a metrics port per service, traces sent to
a local OTLP receiver, and every line of its output kept.
"""

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc
from services import healthcheck, launcher
from testkit import run_in_thread
from testkit.backends import AMQP_URL, delete_queues, require_rabbitmq
from testkit.legacy_amqp import LegacyAmqpClient
from testkit.otlp import OtlpReceiver
from testkit.ports import free_ports
from testkit.suite import suite_environment

READY_SECONDS = 90
CANARY_KEY = f"sk-canary{secrets.token_hex(12)}"
CANARY_INPUT = f"canaryinput{secrets.token_hex(8)}"
SERVER, CONSUMER, CLIENT = 2, 5, 3  # OTLP span kinds


@dataclasses.dataclass
class Observed:
    environ: dict
    log_path: str
    metrics_ports: dict
    receiver: OtlpReceiver
    provider: object
    queue: str

    @property
    def orchestrator(self) -> str:
        return launcher.address("orchestrator", self.environ)

    def scrape(self, service: str) -> list:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_ports[service]}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def log_lines(self) -> list[str]:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read().splitlines()


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    require_rabbitmq()
    receiver = OtlpReceiver().start()
    provider = run_in_thread()
    queue = f"observe_{uuid.uuid4().hex[:10]}_instruction_queue"
    ports = dict(zip(launcher.SERVICES, free_ports(len(launcher.SERVICES))))
    folder = tmp_path_factory.mktemp("observed")
    environ = suite_environment(folder / "data", **{
        "LLMCHATLINKER_AMQP_URL": AMQP_URL,
        "LLMCHATLINKER_QUEUE": queue,
        "LLMCHATLINKER_OUTAGE_WAIT_MS": "1500",
        "LLMCHATLINKER_LOG_LEVEL": "DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **{launcher.variable(service, "METRICS_PORT"): str(port) for service, port in ports.items()},
    })
    log_path = str(folder / "suite.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=environ,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_SECONDS
        waiting = [launcher.address(service, environ) for service in launcher.SERVICES]
        while waiting:
            assert process.poll() is None and time.monotonic() < deadline, open(log_path).read()[-5000:]
            waiting = [address for address in waiting if not healthcheck.is_serving(address, timeout=1.0)]
            time.sleep(0.1)
        yield Observed(environ, log_path, ports, receiver, provider, queue)
    finally:
        process.terminate()
        try:
            process.wait(timeout=2 * launcher.STOP_GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        provider.stop()
        receiver.stop()
        delete_queues(AMQP_URL, [queue, queue + ".dead"])


def submit(observed: Observed, instruction: pb.Instruction, traceparent: str | None = None) -> pb.Result:
    """The final Result of one Submit call (with a traceparent in its metadata when given)."""
    metadata = [("traceparent", traceparent)] if traceparent else None
    with grpc.insecure_channel(observed.orchestrator) as channel:
        responses = pb_grpc.OrchestratorServiceStub(channel).Submit(
            pb.SubmitRequest(instruction=instruction), metadata=metadata, timeout=60)
        return [response.result for response in responses][-1]


def ok(observed: Observed, **instruction) -> pb.Result:
    result = submit(observed, pb.Instruction(**instruction))
    assert result.status.code == 0, result.status
    return result


@dataclasses.dataclass(frozen=True)
class Model:
    user_id: str
    chat_id: str
    provider_name: str
    llm_id: str

    def generate(self, user_input: str = "hello there") -> pb.Instruction:
        return pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
            user_id=self.user_id, chat_id=self.chat_id, llm_id=self.llm_id, user_input=user_input))


def model(observed: Observed, endpoint: str, api_key: str = "") -> Model:
    """A fresh user, chat, provider (on `endpoint`) and model "echo"."""
    tag = uuid.uuid4().hex[:8]
    user = ok(observed, user_create=pb.UserCreate(username=f"u{tag}")).user
    chat = ok(observed, chat_create=pb.ChatCreate(title="observed", user_ids=[user.user_id])).chat.chat
    provider = ok(observed, llm_provider_add=pb.LlmProviderAdd(
        name=f"p{tag}", api_endpoint=endpoint, api_key=api_key)).provider
    llm = ok(observed, llm_add=pb.LlmAdd(provider_id=provider.provider_id, llm_name="echo")).llm
    return Model(user.user_id, chat.chat_id, provider.name, llm.llm_id)


def value(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def eventually(check, timeout: float = 20.0):
    """Polls `check` until it stops raising AssertionError (counters settle just after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_metrics_count_a_known_workload_on_every_service(observed):
    good = model(observed, observed.provider.openai_url)
    failing = model(observed, observed.provider.openai_url + "?fail=500")
    before = {service: observed.scrape(service) for service in launcher.SERVICES}

    results = [submit(observed, good.generate()) for _ in range(10)] + \
              [submit(observed, failing.generate()) for _ in range(3)]

    assert [r.status.code for r in results] == [0] * 10 + [grpc.StatusCode.UNAVAILABLE.value[0]] * 3

    def delta(service: str, after: list, name: str, **labels) -> float:
        return value(after, name, **labels) - value(before[service], name, **labels)

    def llm_unit_counts():
        after = observed.scrape("llm_unit")
        generations = "llmchatlinker_generations_total"
        assert value(after, generations, provider=good.provider_name, model="echo", outcome="ok") == 10
        assert value(after, generations, provider=failing.provider_name, model="echo", outcome="5xx") == 3
        assert value(after, "llmchatlinker_provider_errors_total", provider=failing.provider_name, kind="5xx") == 3
        assert value(after, "llmchatlinker_provider_errors_total", provider=good.provider_name) == 0
        assert value(after, "llmchatlinker_generation_time_to_first_token_seconds_count",
                     provider=good.provider_name, model="echo") == 10
        assert value(after, "llmchatlinker_generation_duration_seconds_count", provider=good.provider_name) == 10
        # The stand-in counts the prompt's words and answers "echo: hello there" (3 tokens).
        assert value(after, "llmchatlinker_generation_tokens_total", provider=good.provider_name, type="output") == 30
        assert value(after, "llmchatlinker_generation_tokens_total", provider=good.provider_name, type="input") > 0
        assert value(after, "llmchatlinker_generation_streams_open") == 0
        served = "grpc_server_handled_total"
        assert delta("llm_unit", after, served, grpc_method="GenerateReply", grpc_code="OK") == 10
        assert delta("llm_unit", after, served, grpc_method="GenerateReply", grpc_code="UNAVAILABLE") == 3
        assert delta("llm_unit", after, "llmchatlinker_database_statement_seconds_count", unit="llm_unit") >= 0

    def orchestrator_counts():
        after = observed.scrape("orchestrator")
        kind = "LLM_RESPONSE_GENERATE"
        assert delta("orchestrator", after, "llmchatlinker_instructions_total", type=kind, status="OK") == 10
        assert delta("orchestrator", after, "llmchatlinker_instructions_total", type=kind, status="UNAVAILABLE") == 3
        assert delta("orchestrator", after, "llmchatlinker_instruction_duration_seconds_count", type=kind) == 13
        assert value(after, "llmchatlinker_instructions_in_flight") == 0
        assert delta("orchestrator", after, "grpc_server_handled_total", grpc_method="Submit", grpc_code="OK") == 13
        assert delta("orchestrator", after, "grpc_client_handled_total", grpc_method="GenerateReply",
                     grpc_code="OK") == 10
        assert delta("orchestrator", after, "grpc_client_handled_total", grpc_method="GenerateReply",
                     grpc_code="UNAVAILABLE") == 3
        assert delta("orchestrator", after, "grpc_client_handling_seconds_count", grpc_method="GenerateReply") == 13
        names = {s.name for s in after}
        assert {"llmchatlinker_queue_depth", "llmchatlinker_dead_letters", "llmchatlinker_redeliveries_total",
                "llmchatlinker_oldest_instruction_age_seconds"} <= names

    eventually(llm_unit_counts)
    eventually(orchestrator_counts)
    for service, unit in (("user_unit", "user_unit"), ("chat_unit", "chat_unit"), ("db_unit", "db_unit")):
        after = observed.scrape(service)
        assert delta(service, after, "grpc_server_handled_total", grpc_code="OK") > 0, service
        assert delta(service, after, "llmchatlinker_database_statement_seconds_count", unit=unit) > 0, service
        assert delta(service, after, "llmchatlinker_database_seconds_per_call_count") > 0, service
        assert any(s.name == "llmchatlinker_database_pool_connections_in_use" for s in after), service
    # Only the successful generations store their messages.
    chat = observed.scrape("chat_unit")
    stored = sum(delta("chat_unit", chat, "grpc_server_handled_total", grpc_method=method, grpc_code="OK")
                 for method in ("AppendMessages", "BatchAppendMessages"))
    assert 1 <= stored <= 10


def test_no_metric_is_labelled_with_an_id(observed):
    m = model(observed, observed.provider.openai_url)
    submit(observed, m.generate())
    ids = {m.user_id, m.chat_id, m.llm_id}
    for service in launcher.SERVICES:
        labels = {v for s in observed.scrape(service) for v in s.labels.values()}
        assert not labels & ids, service


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _whole_path(spans) -> bool:
    services = {span.service for span in spans}
    names = {span.name for span in spans}
    return (set(launcher.SERVICES) <= services and "process LLM_RESPONSE_GENERATE" in names
            and any(name.startswith("POST ") for name in names))


def test_one_trace_spans_the_front_door_every_unit_and_the_provider(observed):
    m = model(observed, observed.provider.openai_url)
    traceparent, trace_id, parent_span = _traceparent()

    assert submit(observed, m.generate(), traceparent=traceparent).status.code == 0

    def whole_path_and_front_door(spans) -> bool:
        # The Submit span ends last (after the final result), so it may be exported after the rest.
        ours = [s for s in spans if s.trace_id == trace_id]
        return _whole_path(ours) and any(s.name.endswith("OrchestratorService/Submit") for s in ours)

    observed.receiver.wait_for(whole_path_and_front_door)
    spans = observed.receiver.trace(trace_id)
    by_id = {span.span_id: span for span in spans}
    front_door = [s for s in spans if s.name.endswith("OrchestratorService/Submit")]
    assert len(front_door) == 1 and front_door[0].kind == SERVER and front_door[0].parent_span_id == parent_span
    process = [s for s in spans if s.name == "process LLM_RESPONSE_GENERATE"]
    assert len(process) == 1 and process[0].kind == CONSUMER
    generate = [s for s in spans if s.service == "llm_unit" and s.name.endswith("LlmService/GenerateReply")]
    assert len(generate) == 1 and generate[0].kind == SERVER
    assert by_id[generate[0].parent_span_id].service == "orchestrator"  # the orchestrator's client span
    provider = [s for s in spans if s.name == f"POST {m.provider_name}"]
    assert len(provider) == 1 and provider[0].kind == CLIENT and provider[0].parent_span_id == generate[0].span_id
    for unit in ("user_unit", "chat_unit", "db_unit"):
        served = [s for s in spans if s.service == unit and s.kind == SERVER]
        assert served, unit
        assert all(by_id[s.parent_span_id].service == "orchestrator" for s in served), unit


def test_an_amqp_message_with_a_traceparent_continues_its_trace(observed):
    m = model(observed, observed.provider.openai_url)
    traceparent, trace_id, parent_span = _traceparent()
    legacy = LegacyAmqpClient(AMQP_URL, observed.queue)
    try:
        legacy.send("LLM_RESPONSE_GENERATE", {"user_id": m.user_id, "chat_id": m.chat_id, "llm_id": m.llm_id,
                                              "user_input": "hello over amqp"}, headers={"traceparent": traceparent})
        observed.receiver.wait_for(lambda spans: _whole_path([s for s in spans if s.trace_id == trace_id]))
    finally:
        legacy.close()
    spans = observed.receiver.trace(trace_id)
    process = [s for s in spans if s.name == "process LLM_RESPONSE_GENERATE"]
    assert len(process) == 1 and process[0].parent_span_id == parent_span
    assert any(s.name == f"POST {m.provider_name}" for s in spans)


def test_one_log_line_per_instruction_and_no_key_input_or_output_at_debug(observed):
    endpoint = observed.provider.openai_url
    keyed = model(observed, endpoint, api_key=CANARY_KEY)
    refused = model(observed, endpoint + f"?require_key=other{secrets.token_hex(4)}", api_key=CANARY_KEY)
    failing = model(observed, endpoint + "?fail=500", api_key=CANARY_KEY)
    instruction = keyed.generate(f"please repeat {CANARY_INPUT}")
    instruction.instruction_id = f"canary-{uuid.uuid4().hex}"

    answer = submit(observed, instruction)
    assert answer.status.code == 0 and CANARY_INPUT in answer.llm_response.message.content  # echoed: model output
    assert submit(observed, refused.generate(CANARY_INPUT)).status.code != 0
    assert submit(observed, failing.generate(CANARY_INPUT)).status.code != 0
    legacy = LegacyAmqpClient(AMQP_URL, observed.queue)
    try:
        legacy.call("LLM_RESPONSE_GENERATE", {"user_id": keyed.user_id, "chat_id": keyed.chat_id,
                                              "llm_id": keyed.llm_id, "user_input": CANARY_INPUT})
        legacy.call("LLM_PROVIDER_LIST", {})
    finally:
        legacy.close()

    def one_line():
        lines = [line for line in observed.log_lines() if f"instruction {instruction.instruction_id} " in line]
        assert len(lines) == 1, lines
        return lines[0]

    line = eventually(one_line)
    assert "LLM_RESPONSE_GENERATE role=admin status=OK" in line and " ms trace=" in line  # no keys: all act as admin
    lines = observed.log_lines()
    assert any(" DEBUG " in line for line in lines)  # the level really was DEBUG
    assert not [line for line in lines if CANARY_KEY in line]
    assert not [line for line in lines if CANARY_INPUT in line]


def test_status_shows_health_queue_and_instructions_in_flight(observed):
    shown = subprocess.run([sys.executable, "-m", "services.cli", "status"], env=observed.environ,
                           capture_output=True, text=True, timeout=60)
    answer = subprocess.run([sys.executable, "-m", "services.cli", "status", "--json"], env=observed.environ,
                            capture_output=True, text=True, timeout=60)

    assert shown.returncode == 0 and answer.returncode == 0, shown.stdout + shown.stderr
    report = json.loads(answer.stdout)
    assert {name: entry["health"] for name, entry in report["services"].items()} == \
        {service: "SERVING" for service in launcher.SERVICES}
    assert report["queue"]["name"] == observed.queue and report["queue"]["dead_letters"] >= 0
    assert report["queue"]["depth"] >= 0
    assert report["orchestrator"]["in_flight"] == 0 and report["orchestrator"]["oldest_unfinished_seconds"] == 0
    assert f"queue {observed.queue} (RabbitMQ)" in shown.stdout and "0 instructions in flight" in shown.stdout
    assert shown.stdout.splitlines()[2].split()[:3] == ["orchestrator", observed.orchestrator, "SERVING"]
