"""The chat unit's settings, read once from LLMCHATLINKER_CHAT_UNIT_* environment variables."""

import dataclasses

from services.common.config import UnitSettings

DEFAULT_PORT = 50053


@dataclasses.dataclass(frozen=True)
class Settings(UnitSettings):
    database_schema: str | None = "chat_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls.read_env("CHAT_UNIT", DEFAULT_PORT)
