"""The legacy reply dict, with the status code, the reason and the value it carries in reach."""

from __future__ import annotations

import grpc

from llmchatlinker.client.errors import DOMAIN, LLMChatLinkerError

# An error reply of the legacy JSON format (the AMQP transport) names no code nor reason.
ERROR_REPLY = "ERROR_REPLY"


class Reply(dict):
    """`{"status": "success" | "error", "message": ..., "data": {...}}`, exactly as the original
    client returned it: the dict's keys and values are unchanged. New code can also read:

    - `ok`: True on success; `code` (a grpc.StatusCode), `reason` and `domain` of an error;
    - `value`: what `data` carries (`data["user"]`, `data["chats"]`, `data["llm_response"]`, ...),
      None when it carries nothing; on an error reply it raises LLMChatLinkerError instead;
    - `raise_for_status()`: raises LLMChatLinkerError on an error reply, else returns the reply.
    """

    def __init__(self, body: dict, code: grpc.StatusCode | None = None, reason: str = "",
                 domain: str = "") -> None:
        super().__init__(body)
        if self.ok:
            self.code, self.reason, self.domain = grpc.StatusCode.OK, "", ""
        elif code is None:
            self.code, self.reason, self.domain = grpc.StatusCode.UNKNOWN, ERROR_REPLY, DOMAIN
        else:
            self.code, self.reason, self.domain = code, reason, domain

    @property
    def ok(self) -> bool:
        return self.get("status") == "success"

    def raise_for_status(self) -> Reply:
        if not self.ok:
            raise LLMChatLinkerError(self.code, str(self.get("message") or "the instruction failed"),
                                     self.reason, self.domain)
        return self

    @property
    def value(self):
        data = self.raise_for_status().get("data") or {}
        if len(data) == 1:
            return next(iter(data.values()))
        return data or None
