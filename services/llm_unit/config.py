"""The LLM unit's settings, read once from LLMCHATLINKER_LLM_UNIT_* environment variables."""

from dataclasses import dataclass

from services.common import config
from services.common.config import UnitSettings

DEFAULT_PORT = 50054
# Overall deadline of one generation when the request gives none (GenerateReplyRequest.timeout_ms).
DEFAULT_GENERATION_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Settings(UnitSettings):
    """Where the unit listens, where it keeps its tables, and how long a generation may take."""

    database_schema: str | None = "llm_unit"
    generation_timeout_ms: int = DEFAULT_GENERATION_TIMEOUT_MS

    @classmethod
    def from_env(cls) -> "Settings":
        timeout_ms = config.integer("LLM_UNIT_GENERATION_TIMEOUT_MS", DEFAULT_GENERATION_TIMEOUT_MS)
        if timeout_ms <= 0:
            raise RuntimeError('environment variable "LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS" must be positive')
        return cls.read_env("LLM_UNIT", DEFAULT_PORT, generation_timeout_ms=timeout_ms)
