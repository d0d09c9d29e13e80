"""The user unit's settings, read once from LLMCHATLINKER_USER_UNIT_* variables."""

import dataclasses

from services.common import config

DEFAULT_PORT = 50052


@dataclasses.dataclass(frozen=True)
class Settings:
    address: str
    database_url: str
    # PostgreSQL schema holding the unit's tables; ignored by SQLite.
    database_schema: str | None = "user_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            address=config.listen_address("USER_UNIT_PORT", DEFAULT_PORT),
            database_url=config.required("USER_UNIT_DATABASE_URL"),
            database_schema=config.optional("USER_UNIT_DATABASE_SCHEMA", "user_unit"),
        )
