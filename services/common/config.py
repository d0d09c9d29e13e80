"""Reading settings from the environment: one reader per kind, each failing fast with a message naming the variable.

Every reader takes the name without the LLMCHATLINKER_ prefix and, for the launcher, an optional
`environ` mapping (default: os.environ). A bad value raises SettingError, whose message names the
variable in full; a service's main() prints it and exits.
"""

import dataclasses
import os
from collections.abc import Iterable, Mapping

PREFIX = "LLMCHATLINKER_"
# URL schemes a database URL may have ("postgresql+psycopg2" counts as postgresql).
DATABASE_SCHEMES = ("postgresql", "sqlite")
# ... and a RabbitMQ URL.
AMQP_SCHEMES = ("amqp", "amqps")
HIGHEST_PORT = 65_535


class SettingError(RuntimeError):
    """A setting is missing or has a value that cannot be used."""


def _variable(name: str) -> str:
    return f'environment variable "{PREFIX}{name}"'


def _raw(name: str, environ: Mapping[str, str] | None) -> str:
    return (os.environ if environ is None else environ).get(PREFIX + name, "").strip()


def required(name: str, environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    if not value:
        raise SettingError(f"{_variable(name)} not set")
    return value


def optional(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    return _raw(name, environ) or default


def integer(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None,
            environ: Mapping[str, str] | None = None) -> int:
    """A whole number, `default` when unset; outside [minimum, maximum] is an error."""
    return _bounded(name, default, minimum, maximum, "", environ)


def milliseconds(name: str, default_ms: int, *, minimum: int = 0, environ: Mapping[str, str] | None = None) -> int:
    """A duration in whole milliseconds, as the variable's _MS name says; at least `minimum` ms.

    Kept in milliseconds (settings fields end in _ms too); divide by 1000 where seconds are needed.
    """
    if not name.endswith("_MS"):
        raise ValueError(f"a duration variable's name ends in _MS: {name!r}")
    return _bounded(name, default_ms, minimum, None, " ms", environ)


def _bounded(name: str, default: int, minimum: int | None, maximum: int | None, unit: str,
             environ: Mapping[str, str] | None) -> int:
    raw = _raw(name, environ)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        what = "a whole number of milliseconds" if unit else "a whole number"
        raise SettingError(f"{_variable(name)} must be {what}, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{_variable(name)} must be at least {minimum}{unit}, not {value}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{_variable(name)} must be at most {maximum}{unit}, not {value}")
    return value


def url(name: str, *, schemes: Iterable[str], default: str | None = None, required: bool = False,
        environ: Mapping[str, str] | None = None) -> str | None:
    """A URL whose scheme (before any "+driver") is one of `schemes`; `default` when unset, or an
    error when `required`. The message never repeats the value: URLs carry passwords."""
    allowed = tuple(schemes)
    value = _raw(name, environ)
    if not value:
        if required:
            raise SettingError(f"{_variable(name)} not set")
        return default
    scheme, separator, _ = value.partition("://")
    if not separator:
        raise SettingError(f"{_variable(name)} must be a URL ({' or '.join(allowed)}://...), and it has no scheme")
    if scheme.split("+", 1)[0].lower() not in allowed:
        raise SettingError(f"{_variable(name)} must be a {' or '.join(allowed)} URL, not a {scheme!r} one")
    return value


def choice(name: str, default: str, choices: Iterable[str], environ: Mapping[str, str] | None = None) -> str:
    """One of `choices` (matched without regard to case, returned as spelt there); `default` when unset."""
    raw = _raw(name, environ)
    if not raw:
        return default
    by_folded = {option.casefold(): option for option in choices}
    if raw.casefold() not in by_folded:
        raise SettingError(f"{_variable(name)} must be one of {', '.join(by_folded.values())}, not {raw!r}")
    return by_folded[raw.casefold()]


def port(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A TCP port; 0 asks the system for a free one (tests)."""
    return integer(name, default, minimum=0, maximum=HIGHEST_PORT, environ=environ)


def listen_address(port_name: str, default_port: int) -> str:
    """HOST:PORT to bind, from LLMCHATLINKER_HOST and the service's port variable."""
    return f"{optional('HOST', '127.0.0.1')}:{port(port_name, default_port)}"


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long the units keep what they may forget (days; 0 keeps it for good), and how often
    they prune (services.common.retention)."""

    # Each unit's request ledger and db_unit's result ledger: an id replayed later runs again.
    ledger_days: int = 7
    # Soft-deleted users, chats (with their members and messages), providers, models, records.
    deleted_days: int = 30
    interval_seconds: int = 600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Retention":
        defaults = cls()
        return cls(
            ledger_days=integer("RETENTION_DAYS", defaults.ledger_days, minimum=0, environ=environ),
            deleted_days=integer("DELETED_RETENTION_DAYS", defaults.deleted_days, minimum=0, environ=environ),
            interval_seconds=integer("PRUNE_INTERVAL_SECONDS", defaults.interval_seconds, minimum=1,
                                     environ=environ),
        )


@dataclasses.dataclass(frozen=True)
class UnitSettings:
    """What every database unit reads: where it listens and where it keeps its tables."""

    # HOST:PORT to listen on; tests pass "127.0.0.1:0" and read the bound port from the server.
    address: str
    database_url: str
    # PostgreSQL schema holding the unit's tables; ignored by SQLite.
    database_schema: str | None = None
    retention: Retention = Retention()

    @classmethod
    def read_env(cls, unit: str, default_port: int, **extra):
        """From LLMCHATLINKER_<UNIT>_PORT, _DATABASE_URL (required) and _DATABASE_SCHEMA
        (default: the unit's name in lower case), and the suite-wide retention."""
        return cls(
            address=listen_address(f"{unit}_PORT", default_port),
            database_url=url(f"{unit}_DATABASE_URL", schemes=DATABASE_SCHEMES, required=True),
            database_schema=optional(f"{unit}_DATABASE_SCHEMA", unit.lower()),
            retention=Retention.from_env(),
            **extra,
        )
