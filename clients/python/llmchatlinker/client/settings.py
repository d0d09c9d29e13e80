"""Connection settings: from arguments first, then environment variables, then defaults."""

from __future__ import annotations

import json
import os

# Where the orchestrator's gRPC front door listens.
ADDRESS_VARIABLE = "LLMCHATLINKER_ORCHESTRATOR_ADDR"
DEFAULT_ADDRESS = "127.0.0.1:50051"
# Seconds one instruction may take from submit to final result (a long LLM reply included). It is
# the outermost of the suite's deadlines, which services/common/deadlines.py nests in one block
# (CLIENT_INSTRUCTION_SECONDS there is this number; this package is released alone, so it keeps
# its own copy, and services/common/tests/test_deadlines.py checks that the two agree).
TIMEOUT_VARIABLE = "LLMCHATLINKER_CLIENT_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0
# The caller key (`llmchatlinker keys create`), sent as `authorization: Bearer <key>`; a suite with
# LLMCHATLINKER_AUTH=keys refuses calls without one.
API_KEY_VARIABLE = "LLMCHATLINKER_API_KEY"
# "grpc" (the default) or "amqp", for LLMChatLinkerClient.
TRANSPORT_VARIABLE = "LLMCHATLINKER_CLIENT_TRANSPORT"
# The legacy AMQP path: a URL, else the original client's RABBITMQ_* variables.
AMQP_URL_VARIABLE = "LLMCHATLINKER_AMQP_URL"
QUEUE_VARIABLE = "LLMCHATLINKER_QUEUE"
# What to install for the AMQP transport. The one place that names it: every hint reads it. The
# distribution is llmchatlinker-client; plain "llmchatlinker" on the public index is another project.
AMQP_INSTALL_HINT = "pip install 'llmchatlinker-client[amqp]' (or just pika)"
DEFAULT_QUEUE = "instruction_queue"

SERVICE_NAME = "llmchatlinker.orchestrator.v1.OrchestratorService"

# Submit is safe to retry: the client always sends an instruction_id, and the orchestrator answers
# a repeated id from its stored result instead of applying it twice. gRPC retries only until the
# first response arrives, so a stream is never replayed half-way.
SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": SERVICE_NAME}],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.2s",
            "maxBackoff": "5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})

CHANNEL_OPTIONS = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def address(given: str | None = None) -> str:
    return given or _env(ADDRESS_VARIABLE) or DEFAULT_ADDRESS


def timeout(given: float | None = None) -> float:
    if given is not None:
        return float(given)
    raw = _env(TIMEOUT_VARIABLE)
    if not raw:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {TIMEOUT_VARIABLE} must be a number of seconds, not {raw!r}") from None


def api_key(given: str | None = None) -> str | None:
    return given or _env(API_KEY_VARIABLE) or None


def key_metadata(key: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries a caller key (none without one)."""
    return (("authorization", f"Bearer {key}"),) if key else ()


def transport(given: str | None = None) -> str:
    chosen = (given or _env(TRANSPORT_VARIABLE) or "grpc").lower()
    if chosen not in ("grpc", "amqp"):
        raise ValueError(f"transport must be 'grpc' or 'amqp', not {chosen!r}")
    return chosen


def queue(given: str | None = None) -> str:
    return given or _env(QUEUE_VARIABLE) or DEFAULT_QUEUE


def amqp_url(given: str | None = None) -> str | None:
    """The broker URL when one is given; None means: use the RABBITMQ_* variables."""
    return given or _env(AMQP_URL_VARIABLE) or None
