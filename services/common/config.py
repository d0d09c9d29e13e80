"""Reading settings from the environment: required values fail fast, naming the variable."""

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
