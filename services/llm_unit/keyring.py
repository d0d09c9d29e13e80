"""Provider API keys at rest: sealed with Fernet under the unit's key-encryption keys.

The keys come from LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY, a comma-separated list of Fernet
keys: the first seals, every one of them opens (cryptography's MultiFernet), so a new key goes in
front and an old one is dropped once nothing sealed with it is left. Without the setting, a unit
on an SQLite file and on loopback keeps a generated key in a file beside the database (mode
0600); on PostgreSQL, or listening beyond loopback, it refuses to start.
"""

import ipaddress
import logging
import os
import pathlib
import tempfile
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.common.config import PREFIX, SettingError

log = logging.getLogger(__name__)

SETTING = "LLM_UNIT_KEY_ENCRYPTION_KEY"
VARIABLE = PREFIX + SETTING
# The file the embedded default keeps its generated key in: the database file's name plus this.
KEY_FILE_SUFFIX = ".key"
MAKE_ONE = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class Unreadable(Exception):
    """A sealed key that none of the configured keys opens (a key dropped from the list too soon)."""


class Keyring:
    """Seals and opens provider API keys. Holds the key-encryption keys; its repr shows none."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._rotating = len(keys) > 1

    def __repr__(self) -> str:
        return "Keyring(...)"

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode("ascii")

    @property
    def rotating(self) -> bool:
        """Whether older keys are configured besides the one that seals."""
        return self._rotating

    def reseal(self, sealed: str) -> str | None:
        """The key sealed again with the first key; None when no configured key opens it."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            return None

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise Unreadable() from None


def parse_keys(value: str) -> tuple[str, ...]:
    """The comma-separated Fernet keys of the setting; an error names the variable, never the value."""
    keys = tuple(part.strip() for part in value.split(",") if part.strip())
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SettingError(
                f'environment variable "{VARIABLE}": key {position} of {len(keys)} is not a Fernet key '
                f"(32 url-safe base64-encoded bytes; make one with {MAKE_ONE})") from None
    return keys


def for_unit(keys: Sequence[str], on_sqlite: bool, sqlite_file: pathlib.Path | None, address: str) -> Keyring:
    """The unit's keyring: the configured keys, else (on SQLite, listening on loopback) a key kept
    beside the database file, made on first start; anything else refuses, naming the variable."""
    if keys:
        return Keyring(keys)
    if not on_sqlite:
        raise SettingError(f'environment variable "{VARIABLE}" not set: on PostgreSQL the llm_unit needs a key '
                           f"to encrypt provider API keys with (make one with {MAKE_ONE})")
    host = address.rpartition(":")[0].strip("[]")
    if not _is_loopback(host):
        raise SettingError(f'environment variable "{VARIABLE}" not set: listening on {host}, beyond loopback, the '
                           f"llm_unit needs a key to encrypt provider API keys with (make one with {MAKE_ONE})")
    if sqlite_file is None:
        return Keyring([Fernet.generate_key().decode()])  # an in-memory database lives no longer than this key
    return Keyring([_kept_key(sqlite_file.with_name(sqlite_file.name + KEY_FILE_SUFFIX))])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _kept_key(path: pathlib.Path) -> str:
    """The key in `path`, written there (mode 0600) first if the file does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        _write_once(path, Fernet.generate_key().decode())
        log.info("made a key-encryption key for provider API keys in %s; keep it with the database", path)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    try:
        (key,) = parse_keys(path.read_text())
    except (SettingError, ValueError):
        raise SettingError(f"{path} does not hold one Fernet key; set {VARIABLE} instead, or restore the file "
                           "(without it, the stored provider API keys cannot be read)") from None
    return key


def _write_once(path: pathlib.Path, key: str) -> None:
    """Writes the file whole or not at all; of two units starting at once, the first one's key wins."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
