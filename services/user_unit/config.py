"""The user unit's settings, read once from LLMCHATLINKER_USER_UNIT_* variables."""

import dataclasses

from services.common.config import UnitSettings

DEFAULT_PORT = 50052


@dataclasses.dataclass(frozen=True)
class Settings(UnitSettings):
    database_schema: str | None = "user_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls.read_env("USER_UNIT", DEFAULT_PORT)
