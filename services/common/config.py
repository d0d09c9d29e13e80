"""Reading settings from the environment: one reader per kind, each failing fast with a message naming the variable.

Every reader takes the name without the LLMCHATLINKER_ prefix and, for the launcher, an optional
`environ` mapping (default: os.environ). A bad value raises SettingError, whose message names the
variable in full; a service's main() prints it and exits.
"""

import dataclasses
import ipaddress
import os
import pathlib
from collections.abc import Iterable, Mapping

PREFIX = "LLMCHATLINKER_"
# URL schemes a database URL may have ("postgresql+psycopg2" counts as postgresql).
DATABASE_SCHEMES = ("postgresql", "sqlite")
# ... and a RabbitMQ URL.
AMQP_SCHEMES = ("amqp", "amqps")
HIGHEST_PORT = 65_535
# The shared secret every unit call carries (services/common/admission.py); the orchestrator and
# every unit read it. Shorter ones are refused: it stands between the network and the units.
INTERNAL_TOKEN = "INTERNAL_TOKEN"
MIN_TOKEN_CHARS = 32
# A server's certificate chain and key, and the CA its clients' certificates must chain to (every server).
SERVER_TLS_SETTINGS = ("TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA")
# The CA the units' certificates chain to, and the orchestrator's own certificate and key (its calls to the units).
UNIT_TLS_SETTINGS = ("UNIT_TLS_CA", "UNIT_TLS_CERT", "UNIT_TLS_KEY")


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


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    host = address.rpartition(":")[0].strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a wildcard ("", 0.0.0.0 is an address) or a host name: reachable from afar
        return False


def internal_token(environ: Mapping[str, str] | None = None) -> str | None:
    """LLMCHATLINKER_INTERNAL_TOKEN: None when unset. The message never repeats the value."""
    token = _raw(INTERNAL_TOKEN, environ)
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise SettingError(f"{_variable(INTERNAL_TOKEN)} must be at least {MIN_TOKEN_CHARS} characters, not "
                           f"{len(token)} (e.g. `openssl rand -hex 32`)")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise SettingError(f"{_variable(INTERNAL_TOKEN)} must be printable ASCII without spaces (it travels "
                           "as a gRPC header)")
    return token


def pem_file(name: str, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The contents of the PEM file the variable names; None when unset."""
    path = _raw(name, environ)
    if not path:
        return None
    try:
        contents = pathlib.Path(path).read_bytes()
    except OSError as error:
        raise SettingError(f"{_variable(name)}: cannot read {path}: {error.strerror or error}") from None
    if b"-----BEGIN " not in contents:
        raise SettingError(f"{_variable(name)}: {path} is not a PEM file")
    return contents


@dataclasses.dataclass(frozen=True)
class ServerTls:
    """A server's TLS: its certificate chain and private key and, when set, the CA every client's
    certificate must chain to (mutual TLS: a client without one cannot even connect)."""

    certificate_chain: bytes = dataclasses.field(repr=False)
    private_key: bytes = dataclasses.field(repr=False)
    client_ca: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclasses.dataclass(frozen=True)
class ClientTls:
    """A client's TLS: the CA the servers' certificates chain to and, for servers that require
    one, the client's own certificate chain and key."""

    ca: bytes = dataclasses.field(repr=False)
    certificate_chain: bytes | None = dataclasses.field(default=None, repr=False)
    private_key: bytes | None = dataclasses.field(default=None, repr=False)


def _certificate_and_key(certificate_name: str, key_name: str,
                         environ: Mapping[str, str] | None) -> tuple[bytes | None, bytes | None]:
    """A certificate chain and its private key: both or neither."""
    certificate, key = pem_file(certificate_name, environ), pem_file(key_name, environ)
    if (certificate is None) != (key is None):
        raise SettingError(f"{_variable(key_name if key is None else certificate_name)} not set: a certificate "
                           f"and its key go together ({PREFIX}{certificate_name}, {PREFIX}{key_name})")
    return certificate, key


def server_tls(environ: Mapping[str, str] | None = None) -> ServerTls | None:
    """TLS_CERT and TLS_KEY, and TLS_CLIENT_CA for mutual TLS; None when no certificate is set."""
    cert_name, key_name, client_ca_name = SERVER_TLS_SETTINGS
    certificate, key = _certificate_and_key(cert_name, key_name, environ)
    client_ca = pem_file(client_ca_name, environ)
    if certificate is None:
        if client_ca is not None:
            raise SettingError(f"{_variable(client_ca_name)} is set but {_variable(cert_name)} is not: "
                               "client certificates are asked for over TLS only")
        return None
    return ServerTls(certificate, key, client_ca)


def unit_tls(environ: Mapping[str, str] | None = None) -> ClientTls | None:
    """UNIT_TLS_CA, and UNIT_TLS_CERT with UNIT_TLS_KEY for units that require a client
    certificate; None (plaintext) when no CA is set."""
    ca_name, cert_name, key_name = UNIT_TLS_SETTINGS
    certificate, key = _certificate_and_key(cert_name, key_name, environ)
    ca = pem_file(ca_name, environ)
    if ca is None:
        if certificate is not None:
            raise SettingError(f"{_variable(cert_name)} is set but {_variable(ca_name)} is not: a client "
                               "certificate is shown over TLS only, and TLS needs the CA that signed the units")
        return None
    return ClientTls(ca, certificate, key)


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
    # What every call but health and reflection must carry; None admits any caller.
    internal_token: str | None = dataclasses.field(default=None, repr=False)
    tls: ServerTls | None = None

    def __post_init__(self):
        """A unit reachable from other machines admits only its callers: by token or by client certificate."""
        if self.internal_token or (self.tls is not None and self.tls.mutual) or is_loopback(self.address):
            return
        raise SettingError(
            f"listening on {self.address} ({PREFIX}HOST), beyond loopback, with no internal credential: "
            f"anyone reaching the port could call the unit; set {PREFIX}{INTERNAL_TOKEN} (the orchestrator's too) "
            f"or mutual TLS ({', '.join(PREFIX + name for name in SERVER_TLS_SETTINGS)})")

    @classmethod
    def read_env(cls, unit: str, default_port: int, **extra):
        """From LLMCHATLINKER_<UNIT>_PORT, _DATABASE_URL (required) and _DATABASE_SCHEMA
        (default: the unit's name in lower case), the suite-wide retention, and the shared
        INTERNAL_TOKEN and TLS_* settings."""
        return cls(
            address=listen_address(f"{unit}_PORT", default_port),
            database_url=url(f"{unit}_DATABASE_URL", schemes=DATABASE_SCHEMES, required=True),
            database_schema=optional(f"{unit}_DATABASE_SCHEMA", unit.lower()),
            retention=Retention.from_env(),
            internal_token=internal_token(),
            tls=server_tls(),
            **extra,
        )
