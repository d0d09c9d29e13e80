"""The orchestrator's settings, read once from LLMCHATLINKER_* environment variables."""

import dataclasses

from services.common import config
from services.orchestrator.queue.transport import INSTRUCTION_QUEUE

DEFAULT_PORT = 50051
# Unacknowledged instructions per replica: the broker's prefetch and the cycle's concurrency.
DEFAULT_MAX_IN_FLIGHT = 256
# How long a model read from llm_unit is reused: a change through this replica is seen by its next
# instruction, through another replica within this time. 0 keeps nothing (generations at the
# same moment still share one read).
DEFAULT_MODEL_CACHE_TTL_MS = 2_000
# How long an instruction waits out an outage (a unit or the provider unreachable) by going back on
# the queue before the outage becomes its final answer, UNAVAILABLE.
DEFAULT_OUTAGE_WAIT_MS = 120_000


@dataclasses.dataclass(frozen=True)
class Settings:
    # HOST:PORT of the gRPC front door; tests pass "127.0.0.1:0" and read the bound port.
    address: str
    user_unit_addr: str
    chat_unit_addr: str
    llm_unit_addr: str
    db_unit_addr: str
    # amqp://user:password@host:port/vhost; None runs the cycle on an in-process queue.
    amqp_url: str | None = None
    queue: str = INSTRUCTION_QUEUE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    model_cache_ttl_ms: int = DEFAULT_MODEL_CACHE_TTL_MS
    outage_wait_ms: int = DEFAULT_OUTAGE_WAIT_MS
    # Sent with every unit call (the units refuse calls without it when they have one set).
    internal_token: str | None = dataclasses.field(default=None, repr=False)
    # The front door's TLS (TLS_CERT, TLS_KEY, TLS_CLIENT_CA); None: plaintext.
    tls: config.ServerTls | None = None
    # The unit calls' TLS (UNIT_TLS_CA, UNIT_TLS_CERT, UNIT_TLS_KEY); None: plaintext.
    unit_tls: config.ClientTls | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            address=config.listen_address("ORCHESTRATOR_PORT", DEFAULT_PORT),
            user_unit_addr=config.required("USER_UNIT_ADDR"),
            chat_unit_addr=config.required("CHAT_UNIT_ADDR"),
            llm_unit_addr=config.required("LLM_UNIT_ADDR"),
            db_unit_addr=config.required("DB_UNIT_ADDR"),
            amqp_url=config.url("AMQP_URL", schemes=config.AMQP_SCHEMES),
            queue=config.optional("QUEUE", INSTRUCTION_QUEUE),
            max_in_flight=config.integer("MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, minimum=1),
            model_cache_ttl_ms=config.milliseconds("MODEL_CACHE_TTL_MS", DEFAULT_MODEL_CACHE_TTL_MS),
            outage_wait_ms=config.milliseconds("OUTAGE_WAIT_MS", DEFAULT_OUTAGE_WAIT_MS),
            internal_token=config.internal_token(),
            tls=config.server_tls(),
            unit_tls=config.unit_tls(),
        )
