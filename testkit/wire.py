"""Byte-level shapes of OpenAI chat completions and Ollama /api/chat answers."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _open_object(value: dict) -> bytes:
    # The object without its closing brace, so per-token bytes are a cheap concatenation.
    return _dumps(value)[:-1]


class OpenAiWire:
    """POST /v1/chat/completions: JSON, or server-sent events ending in `data: [DONE]`."""

    stream_content_type = "text/event-stream"
    garbage_body = b'{"id":"chatcmpl-garbage","choices":[{not json'
    garbage_line = b"data: {not json\n\n"
    # Framing stays valid so a client fails on the payload, not on a truncated stream.
    garbage_end = b"data: [DONE]\n\n"

    def __init__(self, model: str, request: dict) -> None:
        self.model = model
        options = request.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.report_usage = True  # False: no usage, in the stream or the body
        self._id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self._created = int(time.time())
        head = {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": model}
        self._chunk_head = b"data: " + _open_object(head) + b',"choices":[{"index":0,"delta":'
        self._token_head = self._chunk_head + b'{"content":'

    def _chunk(self, delta: bytes, finish: bytes) -> bytes:
        return self._chunk_head + delta + b',"finish_reason":' + finish + b"}]}\n\n"

    def opening(self) -> bytes:
        return self._chunk(b'{"role":"assistant","content":""}', b"null")

    def token(self, text: str) -> bytes:
        return self._token_head + _dumps(text) + b'},"finish_reason":null}]}\n\n'

    def closing(self, prompt: int, completion: int) -> bytes:
        out = self._chunk(b"{}", b'"stop"')
        if self._include_usage and self.report_usage:
            head = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                    "model": self.model, "choices": [], "usage": _usage(prompt, completion)}
            out += b"data: " + _dumps(head) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def body(self, text: str, prompt: int, completion: int) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": _usage(prompt, completion),
        }
        if not self.report_usage:
            del body["usage"]
        return _dumps(body)

    def drip(self, stream: bool) -> tuple[bytes, bytes]:
        """A valid-looking head, then bytes to repeat for ever."""
        if stream:
            return self.opening(), self.token("drip ")
        head = _open_object({"id": self._id, "object": "chat.completion", "model": self.model})
        return head + b',"choices":[{"index":0,"message":{"role":"assistant","content":"', b"."

    @staticmethod
    def error(status: int, message: str) -> dict:
        kind = {400: "invalid_request_error", 401: "invalid_request_error",
                429: "rate_limit_exceeded"}.get(status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class OllamaWire:
    """POST /api/chat: one JSON object, or NDJSON lines ending in `"done":true`."""

    stream_content_type = "application/x-ndjson"
    garbage_body = b'{"model":"garbage","message":{not json'
    garbage_line = b"{not json\n"
    garbage_end = b""

    def __init__(self, model: str, request: dict) -> None:
        self.model = model
        self.report_usage = True  # False: no eval counts in the final object
        self._created_at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        head = _open_object({"model": model, "created_at": self._created_at})
        self._token_head = head + b',"message":{"role":"assistant","content":'

    def opening(self) -> bytes:
        return b""

    def token(self, text: str) -> bytes:
        return self._token_head + _dumps(text) + b'},"done":false}\n'

    def _final(self, text: str, prompt: int, completion: int) -> dict:
        final = {
            "model": self.model,
            "created_at": self._created_at,
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "total_duration": 0,
            "prompt_eval_count": prompt,
            "eval_count": completion,
        }
        if not self.report_usage:
            del final["prompt_eval_count"], final["eval_count"]
        return final

    def closing(self, prompt: int, completion: int) -> bytes:
        return _dumps(self._final("", prompt, completion)) + b"\n"

    def body(self, text: str, prompt: int, completion: int) -> bytes:
        return _dumps(self._final(text, prompt, completion))

    def drip(self, stream: bool) -> tuple[bytes, bytes]:
        """A valid-looking head, then bytes to repeat for ever."""
        if stream:
            return b"", self.token("drip ")
        return self._token_head + b'"', b"."

    @staticmethod
    def error(status: int, message: str) -> dict:
        return {"error": message}


Wire = OpenAiWire | OllamaWire
