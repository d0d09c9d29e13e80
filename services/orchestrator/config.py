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
# Callers: "off" (no keys; loopback only) or "keys" (every gRPC call shows a key).
AUTH_MODES = ("off", "keys")
# The role of a queued (AMQP) message without a key when keys are required; "none" refuses them.
QUEUE_ROLES = ("app", "admin", "none")
# How long a verified key is taken as valid: a revocation reaches every replica within this.
DEFAULT_KEY_CACHE_TTL_MS = 1_000
# Front-door caps (point 8 of issue 13): a Submit request's bytes (room for the largest user input,
# 1,000,000 characters of up to 4 bytes, and its instruction), the characters of a failure's
# message a result echoes, a CHAT_LOAD page's bytes, and the Submit calls one caller holds open.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024 + 64 * 1024
DEFAULT_MAX_ECHO_CHARS = 2_000
DEFAULT_MAX_CHAT_LOAD_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_STREAMS_PER_CALLER = 512


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
    auth: str = "off"
    queue_role: str = "app"
    key_cache_ttl_ms: int = DEFAULT_KEY_CACHE_TTL_MS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_echo_chars: int = DEFAULT_MAX_ECHO_CHARS
    max_chat_load_bytes: int = DEFAULT_MAX_CHAT_LOAD_BYTES
    max_streams_per_caller: int = DEFAULT_MAX_STREAMS_PER_CALLER

    def __post_init__(self):
        """A front door reachable from other machines authenticates its callers."""
        if self.auth == "off" and not config.is_loopback(self.address):
            raise config.SettingError(
                f"listening on {self.address} ({config.PREFIX}HOST), beyond loopback, with {config.PREFIX}AUTH=off: "
                f"anyone reaching the port could act as any user; set {config.PREFIX}AUTH=keys")

    @property
    def require_key(self) -> bool:
        return self.auth == "keys"

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
            auth=config.choice("AUTH", "off", AUTH_MODES),
            queue_role=config.choice("QUEUE_ROLE", "app", QUEUE_ROLES),
            key_cache_ttl_ms=config.integer("KEY_CACHE_TTL_MS", DEFAULT_KEY_CACHE_TTL_MS, minimum=0, maximum=1_000),
            max_request_bytes=config.integer("MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, minimum=1024,
                                             maximum=32 * 1024 * 1024),
            max_echo_chars=config.integer("MAX_ECHO_CHARS", DEFAULT_MAX_ECHO_CHARS, minimum=100),
            max_chat_load_bytes=config.integer("MAX_CHAT_LOAD_BYTES", DEFAULT_MAX_CHAT_LOAD_BYTES, minimum=1024,
                                               maximum=16 * 1024 * 1024),
            max_streams_per_caller=config.integer("MAX_STREAMS_PER_CALLER", DEFAULT_MAX_STREAMS_PER_CALLER,
                                                  minimum=1),
        )
