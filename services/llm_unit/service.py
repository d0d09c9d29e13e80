"""The LLM unit's rules: what a valid provider, model and conversation is, and the generation budget."""

import dataclasses
import datetime
import enum
import urllib.parse
from collections.abc import Callable, Iterable

from services.common.limits import MAX_ID_CHARS
from services.llm_unit import errors
from services.llm_unit.addresses import Policy

MAX_PROVIDER_NAME_CHARS = 100
MAX_ENDPOINT_CHARS = 2_000
MAX_API_KEY_CHARS = 4_000
MAX_LLM_NAME_CHARS = 200
CONTEXT_MAX_MESSAGES = (1, 10_000)
CONTEXT_MAX_CHARS = (1, 10_000_000)
DEFAULT_CONTEXT_MAX_MESSAGES = 50
DEFAULT_CONTEXT_MAX_CHARS = 100_000
# A provider's concurrency bound (per llm_unit replica) and how many generations may wait for it.
MAX_IN_FLIGHT = (0, 100_000)
MAX_WAITING = (0, 100_000)
DEFAULT_MAX_WAITING = 100
# Fallback models per model: each costs a retry loop's worth of time at the most.
MAX_FALLBACKS = 5
MAX_CONVERSATION_MESSAGES = 10_000
ROLES = frozenset({"system", "user", "assistant"})


class Kind(enum.Enum):
    """The protocol a provider speaks."""

    OPENAI = "openai"
    OLLAMA = "ollama"


@dataclasses.dataclass(frozen=True)
class Provider:
    provider_id: str
    name: str
    api_endpoint: str
    kind: Kind
    # The API key as stored: sealed (keyring.py), opened only to call the provider. repr=False
    # all the same: a logged or printed record shows no key in any form.
    sealed_api_key: str | None = dataclasses.field(repr=False)
    created_at: datetime.datetime
    updated_at: datetime.datetime
    # 0: no limit.
    max_in_flight: int = 0
    max_waiting: int = DEFAULT_MAX_WAITING

    @property
    def has_api_key(self) -> bool:
        return self.sealed_api_key is not None


@dataclasses.dataclass(frozen=True)
class Llm:
    llm_id: str
    name: str
    provider_id: str
    context_max_messages: int
    context_max_chars: int
    created_at: datetime.datetime
    updated_at: datetime.datetime
    fallback_llm_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NewProvider:
    name: str
    api_endpoint: str
    kind: Kind
    sealed_api_key: str | None = dataclasses.field(repr=False)
    max_in_flight: int = 0
    max_waiting: int = DEFAULT_MAX_WAITING


@dataclasses.dataclass(frozen=True)
class ProviderChanges:
    """None means unchanged; `replace_api_key` with `sealed_api_key` None removes the key."""

    name: str | None
    api_endpoint: str | None
    kind: Kind | None
    replace_api_key: bool
    sealed_api_key: str | None = dataclasses.field(repr=False)
    max_in_flight: int | None = None
    max_waiting: int | None = None


@dataclasses.dataclass(frozen=True)
class NewLlm:
    name: str
    context_max_messages: int
    context_max_chars: int
    fallback_llm_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LlmChanges:
    """None means unchanged."""

    name: str | None
    context_max_messages: int | None
    context_max_chars: int | None
    fallback_llm_ids: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Message:
    role: str
    content: str


class Grouping(enum.Enum):
    """What usage is summed by: the usage record's column of that name."""

    USER = "user_id"
    LLM = "llm_id"
    PROVIDER = "provider_id"


@dataclasses.dataclass(frozen=True)
class Usage:
    """One generation that produced a reply."""

    ended_at: datetime.datetime
    user_id: str
    chat_id: str
    llm_id: str
    provider_id: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    time_to_first_token_ms: int
    duration_ms: int
    attempts: int


@dataclasses.dataclass(frozen=True)
class UsageSummary:
    key: str
    generations: int
    prompt_tokens: int
    completion_tokens: int
    estimated_generations: int
    mean_time_to_first_token_ms: int
    duration_ms: int


def request_id(value: str) -> str:
    if len(value) > MAX_ID_CHARS:
        raise errors.invalid(f"request_id is longer than {MAX_ID_CHARS} characters", "INVALID_REQUEST_ID")
    return value


def required_id(value: str, field: str) -> str:
    if not value:
        raise errors.invalid(f"{field} is required", "MISSING_ID")
    return value


Seal = Callable[[str], str]


def new_provider(name: str, api_endpoint: str, kind: Kind | None, api_key: str | None, seal: Seal,
                 addresses: Policy, max_in_flight: int | None = None, max_waiting: int | None = None) -> NewProvider:
    """`seal` turns a valid key into its stored form; `addresses` says which hosts are refused."""
    return NewProvider(
        name=provider_name(name),
        api_endpoint=endpoint(api_endpoint, addresses),
        kind=kind or Kind.OPENAI,
        sealed_api_key=_sealed(key(api_key), seal),
        max_in_flight=_limit(max_in_flight, 0, MAX_IN_FLIGHT, "max_in_flight", "INVALID_CONCURRENCY_LIMIT"),
        max_waiting=_limit(max_waiting, DEFAULT_MAX_WAITING, MAX_WAITING, "max_waiting", "INVALID_CONCURRENCY_LIMIT"),
    )


def provider_changes(
    name: str | None, api_endpoint: str | None, kind: Kind | None, api_key: str | None, seal: Seal,
    addresses: Policy, max_in_flight: int | None = None, max_waiting: int | None = None,
) -> ProviderChanges:
    """Absent (None) fields stay unchanged; an empty api_key removes the key."""
    return ProviderChanges(
        name=None if name is None else provider_name(name),
        api_endpoint=None if api_endpoint is None else endpoint(api_endpoint, addresses),
        kind=kind,
        replace_api_key=api_key is not None,
        sealed_api_key=_sealed(key(api_key), seal),
        max_in_flight=_limit(max_in_flight, None, MAX_IN_FLIGHT, "max_in_flight", "INVALID_CONCURRENCY_LIMIT"),
        max_waiting=_limit(max_waiting, None, MAX_WAITING, "max_waiting", "INVALID_CONCURRENCY_LIMIT"),
    )


def _sealed(api_key: str | None, seal: Seal) -> str | None:
    return None if api_key is None else seal(api_key)


def check_key_follows_endpoint(endpoint_now: str, has_key: bool, changes: ProviderChanges) -> None:
    """A stored key is only ever sent to the endpoint it was given with: moving the endpoint of a
    provider that has a key needs the key (or an empty one, for none) in the same request, or any
    caller could point the provider at a host of theirs and collect the key with the next reply."""
    moves = changes.api_endpoint is not None and changes.api_endpoint != endpoint_now
    if moves and has_key and not changes.replace_api_key:
        raise errors.key_needed_for_new_endpoint()


def new_llm(name: str, context_max_messages: int | None, context_max_chars: int | None,
            fallback_llm_ids: Iterable[str] = ()) -> NewLlm:
    return NewLlm(
        name=llm_name(name),
        context_max_messages=_limit(context_max_messages, DEFAULT_CONTEXT_MAX_MESSAGES, CONTEXT_MAX_MESSAGES,
                                    "context_max_messages"),
        context_max_chars=_limit(context_max_chars, DEFAULT_CONTEXT_MAX_CHARS, CONTEXT_MAX_CHARS,
                                 "context_max_chars"),
        fallback_llm_ids=fallbacks(fallback_llm_ids),
    )


def llm_changes(name: str | None, context_max_messages: int | None, context_max_chars: int | None,
                fallback_llm_ids: Iterable[str] | None = None) -> LlmChanges:
    return LlmChanges(
        name=None if name is None else llm_name(name),
        context_max_messages=_limit(context_max_messages, None, CONTEXT_MAX_MESSAGES, "context_max_messages"),
        context_max_chars=_limit(context_max_chars, None, CONTEXT_MAX_CHARS, "context_max_chars"),
        fallback_llm_ids=None if fallback_llm_ids is None else fallbacks(fallback_llm_ids),
    )


def fallbacks(llm_ids: Iterable[str]) -> tuple[str, ...]:
    """An ordered list of distinct model ids, at most MAX_FALLBACKS (that they are live models other
    than the model itself is the store's check)."""
    result = tuple(llm_ids)
    if len(result) > MAX_FALLBACKS or len(set(result)) != len(result) or not all(result):
        raise errors.invalid(f"fallback_llm_ids must hold at most {MAX_FALLBACKS} distinct, non-empty ids",
                             "INVALID_FALLBACKS")
    for llm_id in result:
        if len(llm_id) > MAX_ID_CHARS:
            raise errors.invalid(f"fallback_llm_ids: an id is longer than {MAX_ID_CHARS} characters",
                                 "INVALID_FALLBACKS")
    return result


def check_fallbacks(llm_id: str, fallback_llm_ids: tuple[str, ...]) -> None:
    if llm_id in fallback_llm_ids:
        raise errors.invalid("a model cannot be its own fallback", "INVALID_FALLBACKS")


def provider_name(value: str) -> str:
    return _text(value, MAX_PROVIDER_NAME_CHARS, "provider name", "INVALID_PROVIDER_NAME")


def llm_name(value: str) -> str:
    return _text(value, MAX_LLM_NAME_CHARS, "llm name", "INVALID_LLM_NAME")


def endpoint(value: str, addresses: Policy) -> str:
    """An http(s) URL with a host that is not refused as such (a name is checked when it is called)."""
    url = value.strip()
    if not url or len(url) > MAX_ENDPOINT_CHARS:
        raise errors.invalid(f"api_endpoint must be 1 to {MAX_ENDPOINT_CHARS:,} characters", "INVALID_API_ENDPOINT")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in url)):
        raise errors.invalid(f"api_endpoint must be an http or https URL with a host, not {url[:100]!r}",
                             "INVALID_API_ENDPOINT")
    refusal = addresses.host_refusal(parts.hostname)
    if refusal is not None:
        raise errors.endpoint_not_allowed(url, refusal)
    return url


def key(value: str | None) -> str | None:
    """None or empty: no key. The message never repeats the key."""
    if not value:
        return None
    # It travels in an HTTP header, so only visible ASCII is allowed.
    if len(value) > MAX_API_KEY_CHARS or not all("!" <= c <= "~" for c in value):
        raise errors.invalid(f"api_key must be at most {MAX_API_KEY_CHARS:,} visible ASCII characters",
                             "INVALID_API_KEY")
    return value


def conversation(messages: Iterable[tuple[str, str]]) -> tuple[Message, ...]:
    result = tuple(Message(role, content) for role, content in messages)
    if not 1 <= len(result) <= MAX_CONVERSATION_MESSAGES:
        raise errors.invalid(f"messages must hold 1 to {MAX_CONVERSATION_MESSAGES:,} messages (got {len(result)})",
                             "INVALID_MESSAGES")
    for index, message in enumerate(result):
        if message.role not in ROLES:
            raise errors.invalid(f"messages[{index}].role must be one of {sorted(ROLES)}, not {message.role[:20]!r}",
                                 "INVALID_MESSAGES")
    return result


def check_provider(llm: Llm, provider_id: str) -> None:
    """A GenerateReply that names a provider must name the model's own."""
    if provider_id and provider_id != llm.provider_id:
        raise errors.provider_mismatch(llm.llm_id, provider_id)


# Characters per token when a provider reports no counts: OpenAI's rule of thumb for English text.
CHARS_PER_TOKEN = 4


def token_counts(prompt_tokens: int, completion_tokens: int, messages: Iterable[Message],
                 reply: str) -> tuple[int, int, bool]:
    """(prompt, completion, estimated): the provider's counts, or when it reported neither, an
    estimate from the text's length."""
    if prompt_tokens or completion_tokens:
        return prompt_tokens, completion_tokens, False
    return (_estimate(sum(len(m.content) for m in messages)), _estimate(len(reply)), True)


def _estimate(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def usage_range(start: datetime.datetime | None, end: datetime.datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise errors.invalid("end_time must not be before start_time", "INVALID_TIME_RANGE")


def generation_seconds(timeout_ms: int, default_ms: int, call_remaining: float | None) -> float:
    """The overall budget of a generation: the request's, else the unit's, never past the call's deadline."""
    if timeout_ms < 0:
        raise errors.invalid(f"timeout_ms must not be negative (got {timeout_ms})", "INVALID_TIMEOUT")
    seconds = (timeout_ms or default_ms) / 1000
    if call_remaining is not None:
        seconds = min(seconds, call_remaining)
    return max(seconds, 0.0)


def _text(value: str, maximum: int, what: str, reason: str) -> str:
    text = value.strip()
    if not text or len(text) > maximum or not text.isprintable():
        raise errors.invalid(f"{what} must be 1 to {maximum:,} printable characters", reason)
    return text


def _limit(value: int | None, default: int | None, bounds: tuple[int, int], field: str,
           reason: str = "INVALID_CONTEXT_LIMIT") -> int | None:
    if value is None:
        return default
    low, high = bounds
    if not low <= value <= high:
        raise errors.invalid(f"{field} must be between {low:,} and {high:,} (got {value:,})", reason)
    return value
