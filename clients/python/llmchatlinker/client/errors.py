"""The one exception the clients raise: a non-OK result or a failed call, as a gRPC status."""

from __future__ import annotations

import grpc

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class LLMChatLinkerError(Exception):
    """An instruction ended with a non-OK status, or the call to the suite failed.

    `code` is a `grpc.StatusCode` (NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, ...), `message` the
    readable text, `reason` the UPPER_SNAKE machine-readable reason (for example USER_NOT_FOUND;
    empty when the failure was the call itself) and `domain` the service that gave it.
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "", domain: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain

    @classmethod
    def from_status(cls, status) -> LLMChatLinkerError:
        """From a `llmchatlinker.orchestrator.v1.Status` message."""
        code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
        return cls(code, status.message, status.reason, status.domain)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> LLMChatLinkerError:
        """From a failed gRPC call (the suite unreachable, a deadline passed, ...)."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code or grpc.StatusCode.UNKNOWN, details or "", "", "")
