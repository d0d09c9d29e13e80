"""The providers' wire formats: request bodies and parsers for OpenAI SSE / JSON and Ollama NDJSON.

Pure functions and small state machines, no I/O: the HTTP side lives in providers.py.
"""

import json
import re
from collections.abc import Sequence

from services.llm_unit.service import Kind, Message

# A line longer than this is not a protocol line; it also bounds what one reply can buffer.
MAX_LINE_BYTES = 8 * 2**20
_INT32_MAX = 2**31 - 1
# A provider's error code as a caller may see it: a short identifier ("context_length_exceeded").
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")


class ProtocolError(Exception):
    """The provider answered something that is not its protocol."""


class ReportedError(Exception):
    """The provider reported an error inside an otherwise successful answer; `code` as error_code()."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def request_body(kind: Kind, model: str, messages: Sequence[Message]) -> bytes:
    body: dict = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                  "stream": True}
    if kind is Kind.OPENAI:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, ensure_ascii=False).encode()


class Lines:
    """Splits a byte stream into lines (without the newline), keeping a partial last line."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytearray]:
        self._pending += chunk
        end = self._pending.rfind(b"\n")
        if end < 0:
            if len(self._pending) > MAX_LINE_BYTES:
                raise ProtocolError(f"a line longer than {MAX_LINE_BYTES} bytes")
            return []
        lines = self._pending[:end].split(b"\n")
        del self._pending[: end + 1]
        return lines

    def rest(self) -> bytearray:
        rest, self._pending = self._pending, bytearray()
        return rest


class Reply:
    """What a parser learned beyond the deltas: whether the reply ended, why, and token counts."""

    def __init__(self) -> None:
        self.done = False
        self.finish_reason = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0


class OpenAiEvents(Reply):
    """Server-sent events of a streamed chat completion, one `data:` line at a time."""

    def line(self, line: bytes) -> str:
        """The content delta the line carries ("" for none)."""
        if not line.startswith(b"data:") or self.done:
            return ""  # blank separators, comments (": ping"), event:/id:/retry: fields
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return ""
        chunk = _object(data)
        _raise_reported(chunk)
        self._usage(chunk.get("usage"))
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise ProtocolError("choices is not a list")
        if not choices:
            return ""
        choice = _dict(choices[0], "choices[0]")
        self._finish(choice.get("finish_reason"))
        return _content(_dict(choice.get("delta") or {}, "delta").get("content"))

    def body(self, data: bytes) -> str:
        """A whole (non-streamed) chat completion; returns its content."""
        completion = _object(data)
        _raise_reported(completion)
        self._usage(completion.get("usage"))
        choices = completion.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ProtocolError("a completion without choices")
        choice = _dict(choices[0], "choices[0]")
        self._finish(choice.get("finish_reason"))
        self.done = True
        return _content(_dict(choice.get("message") or {}, "message").get("content"))

    def _usage(self, usage: object) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens = _count(usage.get("prompt_tokens"))
            self.completion_tokens = _count(usage.get("completion_tokens"))

    def _finish(self, reason: object) -> None:
        if isinstance(reason, str) and reason:
            self.finish_reason = reason


class OllamaEvents(Reply):
    """Ollama /api/chat newline-delimited JSON; the last object has "done": true."""

    def line(self, line: bytes) -> str:
        if self.done or not line.strip():
            return ""
        chunk = _object(line)
        _raise_reported(chunk)
        content = _content(_dict(chunk.get("message") or {}, "message").get("content"))
        if chunk.get("done") is True:
            self.done = True
            reason = chunk.get("done_reason")
            self.finish_reason = reason if isinstance(reason, str) else ""
            self.prompt_tokens = _count(chunk.get("prompt_eval_count"))
            self.completion_tokens = _count(chunk.get("eval_count"))
        return content

    def body(self, data: bytes) -> str:
        content = self.line(data)
        if not self.done:
            raise ProtocolError('a whole answer without "done": true')
        return content


def events(kind: Kind) -> OpenAiEvents | OllamaEvents:
    return OpenAiEvents() if kind is Kind.OPENAI else OllamaEvents()


def error_code(body: bytes) -> str:
    """The code of an error answer (OpenAI's error.code, else error.type) when it is a short
    identifier, else "": what of a provider's words reaches the caller."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return _code(parsed.get("error")) if isinstance(parsed, dict) else ""


def _code(error: object) -> str:
    if not isinstance(error, dict):
        return ""
    for field in ("code", "type"):
        value = error.get(field)
        if isinstance(value, str) and _ERROR_CODE.fullmatch(value):
            return value
    return ""


def _error_message(error: object) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return error if isinstance(error, str) else json.dumps(error)


def _object(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise ProtocolError("a payload that is not JSON") from None
    return _dict(value, "payload")


def _dict(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return value


def _content(value: object) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    raise ProtocolError("content is not a string")


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return min(max(int(value), 0), _INT32_MAX)


def _raise_reported(chunk: dict) -> None:
    error = chunk.get("error")
    if error:
        raise ReportedError(_error_message(error), _code(error))
