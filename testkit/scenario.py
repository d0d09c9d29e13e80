"""Behaviour options for the stand-in LLM and the deterministic reply they script."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

# The misbehaviours a request can ask for with `fail=`; faults.py implements them.
FAILURES = frozenset({"refuse", "stall", "drip", "500", "429", "401", "garbage", "cut", "flood"})

_WORD_OR_LEADING_SPACE = re.compile(r"\S+\s*|\s+")


class OptionError(ValueError):
    """An option name or value the stand-in does not understand."""


@dataclass(frozen=True)
class Options:
    """How one request is answered; times are in milliseconds."""

    latency_ms: float = 0.0
    tokens: int | None = None
    interval_ms: float = 0.0
    fail: str | None = None
    drip_ms: float = 200.0
    require_key: str | None = None
    # With `fail`: only the first N requests of this model name fail, later ones are answered.
    fail_first: int | None = None
    # With fail=429 or 500: the Retry-After header sent, in seconds.
    retry_after: float | None = None
    # "off": the reply reports no token counts (no OpenAI `usage`, no Ollama eval counts).
    usage: str = "on"

    def __post_init__(self) -> None:
        for name in ("latency_ms", "interval_ms", "drip_ms"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0")
        if self.usage not in ("on", "off"):
            raise OptionError(f"usage must be 'on' or 'off', not {self.usage!r}")
        if self.fail_first is not None and self.fail_first < 0:
            raise OptionError("fail_first must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise OptionError("retry_after must be >= 0")
        if self.tokens is not None and self.tokens < 0:
            raise OptionError("tokens must be >= 0")
        if self.fail is not None and self.fail not in FAILURES:
            raise OptionError(f"fail must be one of {sorted(FAILURES)}, not {self.fail!r}")
        # Without a floor a `drip_ms=0` request would spin the event loop.
        if self.drip_ms < 1:
            raise OptionError("drip_ms must be >= 1")


_CONVERTERS = {
    "latency_ms": float,
    "tokens": int,
    "interval_ms": float,
    "fail": str,
    "drip_ms": float,
    "require_key": str,
    "fail_first": int,
    "retry_after": float,
    "usage": str,
}
OPTION_NAMES = tuple(_CONVERTERS)


def _converted(raw: Mapping[str, str], source: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for key, text in raw.items():
        convert = _CONVERTERS.get(key)
        if convert is None:
            raise OptionError(f"unknown option {key!r} in {source}; known: {', '.join(OPTION_NAMES)}")
        try:
            values[key] = convert(text)
        except ValueError:
            raise OptionError(f"option {key}={text!r} in {source} is not a {convert.__name__}") from None
    return values


def model_options(model: str) -> dict[str, str]:
    """Options written into a model name as `name@key=value,key=value`."""
    _, at, suffix = model.rpartition("@")
    # A bare "@" with no "=" after it is part of an ordinary model name.
    if not at or "=" not in suffix:
        return {}
    pairs = {}
    for part in suffix.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise OptionError(f"option {part!r} in model name has no '='")
        pairs[key.strip()] = value.strip()
    return pairs


def resolve(defaults: Options, query: Mapping[str, str], model: str) -> Options:
    """Server defaults, overridden by the URL query, overridden by the model name."""
    merged = _converted(query, "query string")
    merged.update(_converted(model_options(model), "model name"))
    return dataclasses.replace(defaults, **merged)


def _text(content: object) -> str:
    # OpenAI also allows a list of typed parts; only text parts carry words.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def reply_tokens(options: Options, messages: list) -> list[str]:
    """The tokens of the reply: numbered fillers, or an echo of the last user message."""
    if options.tokens is not None:
        return [f"t{i} " for i in range(options.tokens)]
    last_user = ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            last_user = _text(message.get("content"))
    return ["echo: ", *_WORD_OR_LEADING_SPACE.findall(last_user)]


def prompt_tokens(messages: list) -> int:
    """Whitespace-separated words across every request message."""
    return sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))
