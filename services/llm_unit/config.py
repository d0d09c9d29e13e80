"""The LLM unit's settings, read once from LLMCHATLINKER_LLM_UNIT_* environment variables."""

from dataclasses import dataclass

from services.common import config

DEFAULT_PORT = 50054
# Overall deadline of one generation when the request gives none (GenerateReplyRequest.timeout_ms).
DEFAULT_GENERATION_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Settings:
    """Where the unit listens, where it keeps its tables, and how long a generation may take."""

    address: str
    database_url: str
    database_schema: str = "llm_unit"
    generation_timeout_ms: int = DEFAULT_GENERATION_TIMEOUT_MS

    @classmethod
    def from_env(cls) -> "Settings":
        timeout_ms = config.integer("LLM_UNIT_GENERATION_TIMEOUT_MS", DEFAULT_GENERATION_TIMEOUT_MS)
        if timeout_ms <= 0:
            raise RuntimeError('environment variable "LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS" must be positive')
        return cls(
            address=config.listen_address("LLM_UNIT_PORT", DEFAULT_PORT),
            database_url=config.required("LLM_UNIT_DATABASE_URL"),
            database_schema=config.optional("LLM_UNIT_DATABASE_SCHEMA", "llm_unit"),
            generation_timeout_ms=timeout_ms,
        )
