"""The chat unit's settings, read once from LLMCHATLINKER_CHAT_UNIT_* environment variables."""

import dataclasses

from services.common import config

DEFAULT_PORT = 50053


@dataclasses.dataclass(frozen=True)
class Settings:
    # HOST:PORT to listen on; tests pass "127.0.0.1:0" and read the bound port from the server.
    address: str
    database_url: str
    # PostgreSQL schema holding the unit's tables; ignored on SQLite.
    database_schema: str | None = "chat_unit"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            address=config.listen_address("CHAT_UNIT_PORT", DEFAULT_PORT),
            database_url=config.required("CHAT_UNIT_DATABASE_URL"),
            database_schema=config.optional("CHAT_UNIT_DATABASE_SCHEMA", "chat_unit"),
        )
