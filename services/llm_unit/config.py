"""The LLM unit's settings, read once from LLMCHATLINKER_LLM_UNIT_* environment variables."""

from dataclasses import dataclass, field

from services.common import config, deadlines, limits
from services.common.config import UnitSettings
from services.llm_unit import keyring

DEFAULT_PORT = 50054
# Overall deadline of one generation when the request gives none (GenerateReplyRequest.timeout_ms);
# its place among the suite's other deadlines is explained in services/common/deadlines.py.
DEFAULT_GENERATION_TIMEOUT_MS = round(deadlines.PROVIDER_REPLY_SECONDS * 1000)
# How long GenerateReply reuses a model and its provider once read from the database. A change
# made through this replica is seen by the next generation (its writes clear the cache); one made
# through another replica is seen within this time. 0 keeps nothing (generations at the same
# moment still share one read).
DEFAULT_MODEL_CACHE_TTL_MS = 2_000
# The most bytes one provider reply may have (framing included). Generous for the longest replies
# (100k tokens streamed as OpenAI events are about 15-20 MB) and no more than the largest gRPC
# message, which carries the whole reply at the end.
DEFAULT_MAX_REPLY_BYTES = limits.MAX_MESSAGE_BYTES
MAX_REPLY_BYTES = (1024, limits.MAX_MESSAGE_BYTES)
# Retries of a generation on the same model before its first token (then its fallbacks), and the
# first back-off (doubling per retry, at most 8 s; a provider's Retry-After wins when longer).
DEFAULT_RETRIES = 2
DEFAULT_RETRY_BACKOFF_MS = 250
# Failures in a row that open a provider's breaker (0: never), and how long it stays open before
# one generation probes it. LiteLLM's router cools a deployment down the same way.
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_COOLDOWN_MS = 30_000
# The limits of users who have none of their own (0: none); see limits.py.
DEFAULT_USER_LIMITS = (0, 0, 0)
USAGE_ACCOUNTING = "LLM_UNIT_USAGE_ACCOUNTING"


@dataclass(frozen=True)
class Settings(UnitSettings):
    """Where the unit listens, where it keeps its tables, how long a generation may take, how
    long a model read for a generation is reused, which provider addresses it calls, how large a
    provider's reply may be, and the keys that seal provider API keys."""

    database_schema: str | None = "llm_unit"
    generation_timeout_ms: int = DEFAULT_GENERATION_TIMEOUT_MS
    model_cache_ttl_ms: int = DEFAULT_MODEL_CACHE_TTL_MS
    # Whether providers may be called at loopback and private addresses (addresses.py); link-local and
    # metadata addresses never are.
    allow_private_endpoints: bool = True
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    # Fernet keys; the first seals, all open (keyring.py). None given: see keyring.for_unit.
    key_encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    retries: int = DEFAULT_RETRIES
    retry_backoff_ms: int = DEFAULT_RETRY_BACKOFF_MS
    breaker_failures: int = DEFAULT_BREAKER_FAILURES
    breaker_cooldown_ms: int = DEFAULT_BREAKER_COOLDOWN_MS
    # Requests per minute, tokens per day, tokens per month of a user without limits of their own.
    default_user_limits: tuple[int, int, int] = DEFAULT_USER_LIMITS
    # Whether every generation's usage is recorded (usage.py). Off, nothing is recorded or reported,
    # and token budgets, which count recorded tokens, cannot be set.
    usage_accounting: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.usage_accounting and any(self.default_user_limits[1:]):
            raise config.SettingError(
                f"LLMCHATLINKER_{USAGE_ACCOUNTING} is false, so no tokens are counted: default token budgets "
                "(LLMCHATLINKER_LLM_UNIT_DEFAULT_TOKENS_PER_DAY, _PER_MONTH) cannot be kept; unset them or turn "
                "usage accounting on")

    @classmethod
    def from_env(cls) -> "Settings":
        return cls.read_env(
            "LLM_UNIT", DEFAULT_PORT,
            generation_timeout_ms=config.milliseconds("LLM_UNIT_GENERATION_TIMEOUT_MS", DEFAULT_GENERATION_TIMEOUT_MS,
                                                      minimum=1),
            model_cache_ttl_ms=config.milliseconds("LLM_UNIT_MODEL_CACHE_TTL_MS", DEFAULT_MODEL_CACHE_TTL_MS),
            max_reply_bytes=config.integer("LLM_UNIT_MAX_REPLY_BYTES", DEFAULT_MAX_REPLY_BYTES,
                                           minimum=MAX_REPLY_BYTES[0], maximum=MAX_REPLY_BYTES[1]),
            allow_private_endpoints=config.choice("LLM_UNIT_ALLOW_PRIVATE_ENDPOINTS", "true", ("true", "false")) == "true",
            key_encryption_keys=keyring.parse_keys(config.optional("LLM_UNIT_KEY_ENCRYPTION_KEY", "")),
            retries=config.integer("LLM_UNIT_RETRIES", DEFAULT_RETRIES, minimum=0, maximum=10),
            retry_backoff_ms=config.milliseconds("LLM_UNIT_RETRY_BACKOFF_MS", DEFAULT_RETRY_BACKOFF_MS),
            breaker_failures=config.integer("LLM_UNIT_BREAKER_FAILURES", DEFAULT_BREAKER_FAILURES, minimum=0),
            breaker_cooldown_ms=config.milliseconds("LLM_UNIT_BREAKER_COOLDOWN_MS", DEFAULT_BREAKER_COOLDOWN_MS),
            default_user_limits=(
                config.integer("LLM_UNIT_DEFAULT_REQUESTS_PER_MINUTE", 0, minimum=0, maximum=1_000_000),
                config.integer("LLM_UNIT_DEFAULT_TOKENS_PER_DAY", 0, minimum=0, maximum=2_000_000_000),
                config.integer("LLM_UNIT_DEFAULT_TOKENS_PER_MONTH", 0, minimum=0, maximum=2_000_000_000),
            ),
            usage_accounting=config.choice(USAGE_ACCOUNTING, "true", ("true", "false")) == "true",
        )
