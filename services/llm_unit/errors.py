"""The LLM unit's error domain and its specific errors.

Messages about a provider name it by its name and never carry its API key, nor the words of its
error answers (only their status and error code).
"""

import http

from services.common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

DOMAIN = "llm.llmchatlinker.dev"
# Ids in messages are cut to this length, so a huge bogus id cannot make a huge message.
_SHOWN_ID_CHARS = 64


def _shown(identifier: str) -> str:
    return identifier if len(identifier) <= _SHOWN_ID_CHARS else identifier[:_SHOWN_ID_CHARS] + "..."


def invalid(message: str, reason: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason)


def provider_not_found(provider_id: str) -> NotFound:
    return NotFound(f"provider {_shown(provider_id)!r} not found", reason="PROVIDER_NOT_FOUND")


def llm_not_found(llm_id: str) -> NotFound:
    return NotFound(f"llm {_shown(llm_id)!r} not found", reason="LLM_NOT_FOUND")


def provider_name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"a provider named {name!r} already exists", reason="PROVIDER_NAME_TAKEN")


def llm_name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"the provider already has a model named {name!r}", reason="LLM_NAME_TAKEN")


def key_needed_for_new_endpoint() -> FailedPrecondition:
    return FailedPrecondition(
        "supply the key again when changing the endpoint: a stored API key is only sent to the endpoint it "
        "was given for (an empty api_key means none)", reason="API_KEY_NEEDED_FOR_NEW_ENDPOINT",
    )


def usage_accounting_off(what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"{what}: usage accounting is off on this llm_unit (LLMCHATLINKER_LLM_UNIT_USAGE_ACCOUNTING=false), "
        "so no generation's tokens are recorded", reason="USAGE_ACCOUNTING_OFF",
    )


def provider_key_unreadable(provider: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the stored API key of provider {provider!r} cannot be decrypted with the unit's key-encryption keys "
        "(LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY); supply the key again with an update",
        reason="PROVIDER_KEY_UNREADABLE",
    )


def provider_mismatch(llm_id: str, provider_id: str) -> InvalidArgument:
    return InvalidArgument(
        f"llm {_shown(llm_id)!r} is not served by provider {_shown(provider_id)!r}", reason="PROVIDER_MISMATCH"
    )


# Failures of a call to a provider, one reason each.

def provider_unreachable(provider: str, detail: str) -> Unavailable:
    return Unavailable(f"provider {provider!r} is unreachable: {detail}", reason="PROVIDER_UNREACHABLE")


def provider_address_refused(provider: str, why: str) -> PermissionDenied:
    """`why` is one of addresses.py's refusals; the address itself goes to the log only."""
    return PermissionDenied(f"provider {provider!r} is at {why}", reason="PROVIDER_ADDRESS_NOT_ALLOWED")


def endpoint_not_allowed(url: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"api_endpoint {url[:100]!r} names {why}", reason="API_ENDPOINT_NOT_ALLOWED")


def provider_rate_limited(provider: str, status: int, code: str) -> Unavailable:
    return Unavailable(f"provider {provider!r} is rate limiting ({_http(status, code)})", reason="PROVIDER_RATE_LIMITED")


def provider_error(provider: str, detail: str) -> Unavailable:
    return Unavailable(f"provider {provider!r} failed: {detail}", reason="PROVIDER_ERROR")


def provider_failed(provider: str, status: int, code: str) -> Unavailable:
    return provider_error(provider, _http(status, code))


def provider_reported_error(provider: str, code: str) -> Unavailable:
    return provider_error(provider, "it reported an error in its reply" + (f" ({code})" if code else ""))


def provider_rejected_key(provider: str, status: int, code: str) -> FailedPrecondition:
    return FailedPrecondition(f"provider {provider!r} rejected the API key ({_http(status, code)})",
                              reason="PROVIDER_REJECTED_KEY")


def provider_rejected_request(provider: str, status: int, code: str) -> FailedPrecondition:
    return FailedPrecondition(f"provider {provider!r} rejected the request ({_http(status, code)})",
                              reason="PROVIDER_REJECTED_REQUEST")


def provider_bad_response(provider: str, detail: str) -> Internal:
    return Internal(f"provider {provider!r} answered something that is not its protocol: {detail}",
                    reason="PROVIDER_BAD_RESPONSE")


def provider_stream_cut(provider: str) -> Unavailable:
    return Unavailable(f"provider {provider!r} ended the reply before it was complete", reason="PROVIDER_STREAM_CUT")


def reply_too_large(provider: str, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"provider {provider!r} sent a reply larger than {limit:,} bytes, the limit "
        "(LLMCHATLINKER_LLM_UNIT_MAX_REPLY_BYTES)", reason="PROVIDER_REPLY_TOO_LARGE",
    )


def generation_timeout(provider: str, seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"provider {provider!r} did not finish the reply within {seconds:.3g} s", reason="GENERATION_TIMEOUT"
    )


def _http(status: int, code: str) -> str:
    """A provider's error answer as a caller sees it: the status, its standard phrase and the
    provider's error code, never the provider's own words (an endpoint's error page may hold what
    the caller must not read; the unit's log has them)."""
    try:
        phrase = f" {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    return f"HTTP {status}{phrase}" + (f": {code}" if code else "")


# Failures of the unit's own guards around a provider (failover.py, traffic.py).

def provider_busy(provider: str, in_flight: int, waiting: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"provider {provider!r} has {in_flight:,} generations in flight and {waiting:,} waiting, its limits "
        "(max_in_flight, max_waiting); try again later", reason="PROVIDER_BUSY",
    )


def provider_circuit_open(provider: str, failures: int, last_reason: str, seconds_left: float) -> Unavailable:
    return Unavailable(
        f"provider {provider!r} is skipped after {failures} failures in a row (the last: {last_reason}); the next "
        f"try goes in {seconds_left:.1f} s", reason="PROVIDER_CIRCUIT_OPEN", retryDelaySeconds=f"{seconds_left:.3f}",
    )


def with_earlier_failures(last: DomainError, tries: list[tuple[str, str, str]]) -> DomainError:
    """The last failure of a generation that tried more than once (same code and reason), its message
    saying what was tried: `tries` holds (model, provider, reason) of every try, the last included."""
    if len(tries) <= 1:
        return last
    models = list(dict.fromkeys((model, provider) for model, provider, _ in tries))
    if len(models) == 1:
        summary = f"{len(tries)} tries"
    else:
        counts = [sum(1 for t in tries if t[:2] == key) for key in models]
        summary = "tried " + ", ".join(f"{model!r} at {provider!r} {_times(n)}"
                                       for (model, provider), n in zip(models, counts))
    return type(last)(f"{last.message} ({summary})", reason=last.reason, **last.metadata)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
