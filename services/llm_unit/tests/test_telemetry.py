"""What a generation shows an operator: a provider's failure counted under its kind, a good reply's
time to first token, duration and tokens, and no stream left open either way."""

import uuid

import grpc
import pytest
from prometheus_client import REGISTRY

from services.llm_unit import telemetry
from testkit.llm_unit import add_model, expect_error, generate

KINDS = [
    ("refuse", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNREACHABLE", "refused"),
    ("stall", grpc.StatusCode.DEADLINE_EXCEEDED, "GENERATION_TIMEOUT", "timeout"),
    ("401", grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_REJECTED_KEY", "4xx"),
    ("429", grpc.StatusCode.UNAVAILABLE, "PROVIDER_RATE_LIMITED", "4xx"),
    ("500", grpc.StatusCode.UNAVAILABLE, "PROVIDER_ERROR", "5xx"),
    ("garbage", grpc.StatusCode.INTERNAL, "PROVIDER_BAD_RESPONSE", "malformed"),
    ("cut", grpc.StatusCode.UNAVAILABLE, "PROVIDER_STREAM_CUT", "cut"),
]


@pytest.fixture(autouse=True)
def own_series(monkeypatch):
    """Each test's provider is new: past telemetry.MAX_SERIES pairs (other tests' generations in the
    same process count too) it would be counted as ("other", "other")."""
    monkeypatch.setattr(telemetry, "_series", set())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("fail, code, reason, kind", KINDS, ids=[k[0] for k in KINDS])
async def test_a_provider_failure_is_counted_under_its_kind(sqlite_unit, provider_server, fail, code, reason, kind):
    provider = f"p{uuid.uuid4().hex[:8]}"
    model = f"m@fail={fail}"
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model=model, name=provider)

    for _ in range(2):
        await expect_error(generate(sqlite_unit.stub, llm.llm_id, timeout_ms=400), code, reason)

    labels = {"provider": provider, "model": model}
    assert sample("llmchatlinker_provider_errors_total", **labels, kind=kind) == 2
    assert sample("llmchatlinker_generations_total", **labels, outcome=kind) == 2
    assert sample("llmchatlinker_generations_total", **labels, outcome="ok") == 0
    assert sample("llmchatlinker_generation_duration_seconds_count", **labels) == 0
    assert sample("llmchatlinker_generation_streams_open") == 0


async def test_a_good_reply_counts_its_first_token_duration_and_tokens(sqlite_unit, provider_server):
    provider = f"p{uuid.uuid4().hex[:8]}"
    model = "m@tokens=4"
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model=model, name=provider)

    for _ in range(3):
        await generate(sqlite_unit.stub, llm.llm_id)

    labels = {"provider": provider, "model": model}
    assert sample("llmchatlinker_generations_total", **labels, outcome="ok") == 3
    assert sample("llmchatlinker_generation_time_to_first_token_seconds_count", **labels) == 3
    assert sample("llmchatlinker_generation_duration_seconds_count", **labels) == 3
    assert sample("llmchatlinker_generation_tokens_total", **labels, type="output") == 12
    assert sample("llmchatlinker_generation_tokens_total", **labels, type="input") > 0
    assert sample("llmchatlinker_provider_errors_total", **labels, kind="5xx") == 0
    assert sample("llmchatlinker_generation_streams_open") == 0


async def test_a_provider_whose_breaker_opens_shows_it_open(sqlite_unit, provider_server):
    provider = f"p{uuid.uuid4().hex[:8]}"
    llm = await add_model(sqlite_unit.stub, provider_server.openai_url, model="m@fail=500", name=provider)

    for _ in range(5):  # the breaker's default threshold: five failed generations in a row
        await expect_error(generate(sqlite_unit.stub, llm.llm_id, timeout_ms=400), grpc.StatusCode.UNAVAILABLE,
                           "PROVIDER_ERROR")

    assert sample("llmchatlinker_provider_circuit_open", provider=provider) == 1
    await expect_error(generate(sqlite_unit.stub, llm.llm_id, timeout_ms=400), grpc.StatusCode.UNAVAILABLE,
                       "PROVIDER_CIRCUIT_OPEN")
