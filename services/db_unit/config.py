"""The db unit's settings, read once from LLMCHATLINKER_DB_UNIT_* variables."""

import dataclasses

from services.common.config import UnitSettings

DEFAULT_PORT = 50055


@dataclasses.dataclass(frozen=True)
class Settings(UnitSettings):
    database_schema: str | None = "db_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls.read_env("DB_UNIT", DEFAULT_PORT)
