"""Reading settings from the environment: required values fail fast, naming the variable."""

import dataclasses
import os

PREFIX = "LLMCHATLINKER_"


def required(name: str) -> str:
    value = os.environ.get(PREFIX + name, "").strip()
    if not value:
        raise RuntimeError(f'environment variable "{PREFIX}{name}" not set')
    return value


def optional(name: str, default: str) -> str:
    value = os.environ.get(PREFIX + name, "").strip()
    return value or default


def integer(name: str, default: int) -> int:
    raw = optional(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f'environment variable "{PREFIX}{name}" must be a whole number, not {raw!r}') from None


def listen_address(port_name: str, default_port: int) -> str:
    """HOST:PORT to bind, from LLMCHATLINKER_HOST and the service's port variable."""
    return f"{optional('HOST', '127.0.0.1')}:{integer(port_name, default_port)}"


@dataclasses.dataclass(frozen=True)
class UnitSettings:
    """What every database unit reads: where it listens and where it keeps its tables."""

    # HOST:PORT to listen on; tests pass "127.0.0.1:0" and read the bound port from the server.
    address: str
    database_url: str
    # PostgreSQL schema holding the unit's tables; ignored by SQLite.
    database_schema: str | None = None

    @classmethod
    def read_env(cls, unit: str, default_port: int, **extra):
        """From LLMCHATLINKER_<UNIT>_PORT, _DATABASE_URL (required) and _DATABASE_SCHEMA
        (default: the unit's name in lower case)."""
        return cls(
            address=listen_address(f"{unit}_PORT", default_port),
            database_url=required(f"{unit}_DATABASE_URL"),
            database_schema=optional(f"{unit}_DATABASE_SCHEMA", unit.lower()),
            **extra,
        )
