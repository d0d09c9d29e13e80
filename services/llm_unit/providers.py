"""Calls LLM providers over HTTP, always streaming, through one shared aiohttp session.

Every wait on the provider runs under the generation's one absolute deadline
(`asyncio.timeout_at`), so a provider that stalls or drips a byte at a time is cut
off when the budget is spent. The deadline wraps each await rather than the whole
exchange because the reply is an async iterator: a timeout scope that spans a
`yield` would fire its cancellation into whatever the consumer awaits (PEP 789).
"""

import asyncio
import contextlib
import dataclasses
import datetime
import email.utils
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp.abc import AbstractResolver

from services.common import tracing
from services.common.errors import DomainError
from services.llm_unit import errors, guard, keyring, protocols, service
from services.llm_unit.addresses import Policy

log = logging.getLogger(__name__)

# Bytes of an error answer read for its error code and the log, and how long to wait for them.
ERROR_BODY_BYTES = 4096
ERROR_BODY_SECONDS = 2.0
# After the end marker, how long to wait for the end of the body so the connection can be reused.
DRAIN_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class Final:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class ProviderClient:
    """Owns the one aiohttp session; open it with start() inside the event loop. Opens a provider's
    sealed API key only to send it."""

    def __init__(self, keys: keyring.Keyring, addresses: Policy, max_reply_bytes: int,
                 resolver: AbstractResolver | None = None) -> None:
        self._keys = keys
        self._max_reply_bytes = max_reply_bytes
        self._addresses = addresses
        self._resolver = resolver  # None: aiohttp's default (tests map names to addresses)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # limit=0: hundreds of generations run at once and each holds its connection
        # for the whole reply; a pool cap would queue them (see floors.md).
        self._session = aiohttp.ClientSession(
            connector=guard.Connector(self._addresses, self._resolver, limit=0),
            timeout=aiohttp.ClientTimeout(total=None),  # the generation deadline bounds every wait
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def reply(
        self, provider: service.Provider, model: str, messages: Sequence[service.Message],
        deadline: float, budget: float,
    ) -> AsyncIterator["Reply"]:
        """Opens the provider's answer; leaving the block closes it (so a cancelled caller hangs up).

        A clean exit first reads the body to its end, so the connection goes back to the pool.
        """
        if self._session is None:
            raise RuntimeError("ProviderClient.start() was not called")
        reply = Reply(provider, self._api_key(provider), deadline, budget, self._max_reply_bytes)
        try:
            await reply.open(self._session, model, messages)
            yield reply
            await reply.drain()
        finally:
            reply.close()

    def _api_key(self, provider: service.Provider) -> str | None:
        if provider.sealed_api_key is None:
            return None
        try:
            return self._keys.open(provider.sealed_api_key)
        except keyring.Unreadable:
            log.warning("provider %r: its stored API key does not open with %s", provider.name, keyring.VARIABLE)
            raise errors.provider_key_unreadable(provider.name) from None


class Reply:
    """One streamed answer: iterate for batches of content deltas (one per network read), then .final()."""

    def __init__(self, provider: service.Provider, api_key: str | None, deadline: float, budget: float,
                 max_bytes: int) -> None:
        self._provider = provider
        self._api_key = api_key
        self._max_bytes = max_bytes
        self._received = 0
        self._deadline = deadline
        self._budget = budget
        self._response: aiohttp.ClientResponse | None = None
        self._events = protocols.events(provider.kind)
        self._lines = protocols.Lines()
        self._whole_body: bytearray | None = None  # set when an OpenAI provider answers plain JSON
        self._parts: list[str] = []
        self._finished = False

    async def open(self, session: aiohttp.ClientSession, model: str, messages: Sequence[service.Message]) -> None:
        provider = self._provider
        headers = tracing.inject({"Content-Type": "application/json"})  # traceparent, while tracing
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        body = protocols.request_body(provider.kind, model, messages)
        self._response = await self._within_deadline(
            session.post(provider.api_endpoint, data=body, headers=headers, allow_redirects=False), opening=True
        )
        status = self._response.status
        if not 200 <= status < 300:
            body = await self._error_body()
            failure = _status_error(provider.name, status, protocols.error_code(body))
            failure.retry_after = retry_after(self._response.headers.get("Retry-After"))  # failover.py reads it
            raise self._failed(failure, status)
        content_type = self._response.content_type
        if provider.kind is service.Kind.OPENAI:
            if content_type == "application/json":
                self._whole_body = bytearray()
            elif content_type not in ("text/event-stream", "application/octet-stream"):
                raise self._failed(errors.provider_bad_response(
                    provider.name, f"content-type {content_type[:60]!r} instead of server-sent events"), status)

    def __aiter__(self) -> "Reply":
        return self

    async def __anext__(self) -> list[str]:
        if self._finished:
            raise StopAsyncIteration
        assert self._response is not None
        chunk = await self._within_deadline(self._response.content.readany(), opening=False)
        self._received += len(chunk)
        if self._received > self._max_bytes:  # leaving the reply's block hangs up on the provider
            raise self._failed(errors.reply_too_large(self._provider.name, self._max_bytes))
        try:
            deltas = self._parse(chunk) if chunk else self._parse_end()
        except protocols.ProtocolError as error:
            raise self._failed(errors.provider_bad_response(self._provider.name, str(error))) from None
        except protocols.ReportedError as error:
            raise self._failed(errors.provider_reported_error(self._provider.name, error.code)) from None
        self._finished = self._events.done
        self._parts.extend(deltas)
        return deltas

    def final(self) -> Final:
        events = self._events
        return Final("".join(self._parts), events.finish_reason, events.prompt_tokens, events.completion_tokens)

    def close(self) -> None:
        """Returns a fully read connection to the pool; otherwise hangs up so the provider stops."""
        response, self._response = self._response, None
        if response is None:
            return
        if self._finished and response.content.at_eof():
            response.release()
        else:
            response.close()

    def abort(self, *_ignored: object) -> None:
        """For a task done-callback: hang up if the reply is still open."""
        self._finished = False
        self.close()

    def _parse(self, chunk: bytes) -> list[str]:
        if self._whole_body is not None:
            self._whole_body += chunk
            return []
        line = self._events.line
        return [text for text in map(line, self._lines.feed(chunk)) if text]

    def _parse_end(self) -> list[str]:
        if self._whole_body is not None:
            text = self._events.body(bytes(self._whole_body))
            return [text] if text else []
        deltas = [text for text in [self._events.line(self._lines.rest())] if text]
        if not self._events.done:
            raise self._failed(errors.provider_stream_cut(self._provider.name))
        return deltas

    async def _within_deadline(self, awaitable, opening: bool):
        """Awaits provider I/O, turning its failures into the unit's errors."""
        scope = asyncio.timeout_at(self._deadline)
        name = self._provider.name
        try:
            async with scope:
                return await awaitable
        except TimeoutError as error:
            if scope.expired():
                raise self._failed(errors.generation_timeout(name, self._budget)) from None
            failure = errors.provider_unreachable(name, _describe(error)) if opening else errors.provider_stream_cut(name)
        except guard.AddressRefused as refused:
            log.warning("provider %r: %s", name, refused)
            failure = errors.provider_address_refused(name, refused.why)
        except aiohttp.ClientResponseError:  # an HTTP answer aiohttp could not parse
            # aiohttp's message may quote the answer's bytes: neither the caller nor the log gets it.
            failure = errors.provider_bad_response(name, "an answer that is not valid HTTP")
        except aiohttp.ClientPayloadError:
            failure = errors.provider_stream_cut(name)
        except (aiohttp.ClientError, OSError) as error:
            failure = errors.provider_unreachable(name, _describe(error)) if opening else errors.provider_stream_cut(name)
        raise self._failed(failure) from None

    async def _error_body(self) -> bytes:
        assert self._response is not None
        body = b""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
            async with asyncio.timeout_at(min(self._deadline, loop.time() + ERROR_BODY_SECONDS)):
                while len(body) < ERROR_BODY_BYTES and (chunk := await self._response.content.read(ERROR_BODY_BYTES)):
                    body += chunk
        return body[:ERROR_BODY_BYTES]

    async def drain(self) -> None:
        """Reads what follows the end marker (normally just the body's end) so the connection is reusable."""
        if not self._finished or self._response is None or self._response.content.at_eof():
            return
        content = self._response.content
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
            async with asyncio.timeout_at(min(self._deadline, loop.time() + DRAIN_SECONDS)):
                while await content.readany():
                    pass

    def _failed(self, error: DomainError, status: int | None = None) -> DomainError:
        # The reason, the status and the provider's name only: the message and the provider's own
        # words may quote the input, which no log line carries.
        log.warning("generation failed [%s%s]: provider %r", error.reason, f", HTTP {status}" if status else "",
                    self._provider.name)
        return error


def _status_error(provider: str, status: int, code: str) -> DomainError:
    if status in (401, 403):
        return errors.provider_rejected_key(provider, status, code)
    if status == 429:
        return errors.provider_rate_limited(provider, status, code)
    if status >= 500:
        return errors.provider_failed(provider, status, code)
    if 400 <= status < 500:
        return errors.provider_rejected_request(provider, status, code)
    return errors.provider_bad_response(provider, f"HTTP {status} (redirects are not followed)")


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date (RFC 9110 10.2.3); None when
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _describe(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {error.host}:{error.port} ({error.strerror or type(error.os_error).__name__})"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "it closed the connection without answering"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__
