"""The db unit's settings, read once from LLMCHATLINKER_DB_UNIT_* variables."""

import dataclasses

from services.common import config

DEFAULT_PORT = 50055


@dataclasses.dataclass(frozen=True)
class Settings:
    address: str
    database_url: str
    # PostgreSQL schema holding the unit's tables; ignored by SQLite.
    database_schema: str | None = "db_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            address=config.listen_address("DB_UNIT_PORT", DEFAULT_PORT),
            database_url=config.required("DB_UNIT_DATABASE_URL"),
            database_schema=config.optional("DB_UNIT_DATABASE_SCHEMA", "db_unit"),
        )
