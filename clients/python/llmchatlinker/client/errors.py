"""The one exception the clients raise: a non-OK result or a failed call, as a gRPC status."""

from __future__ import annotations

import grpc

from llmchatlinker.client.details import error_info

_CODES = {code.value[0]: code for code in grpc.StatusCode}

# The domain of the reasons the client gives itself, when the suite gave none.
DOMAIN = "client.llmchatlinker.dev"
# The suite could not be reached at all (nothing listens, or the connection broke).
SUITE_UNREACHABLE = "SUITE_UNREACHABLE"
# The call outlived its deadline (LLMCHATLINKER_CLIENT_TIMEOUT, or timeout=).
CALL_DEADLINE_EXCEEDED = "CALL_DEADLINE_EXCEEDED"
# The call was cancelled on this side.
CALL_CANCELLED = "CALL_CANCELLED"
# Any other failure of the call that the suite did not explain.
CALL_FAILED = "CALL_FAILED"
# The result stream ended before its final result.
STREAM_ENDED_EARLY = "STREAM_ENDED_EARLY"
# A field the client refuses before sending (the suite gives the same reason for it).
INVALID_FIELD = "INVALID_FIELD"


class LLMChatLinkerError(Exception):
    """An instruction ended with a non-OK status, or the call to the suite failed.

    `code` is a `grpc.StatusCode` (NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE, ...), `message` the
    readable text, `reason` the UPPER_SNAKE machine-readable reason (for example USER_NOT_FOUND,
    or SUITE_UNREACHABLE when nothing answers at the address) and `domain` who gave it: a service
    of the suite, or `client.llmchatlinker.dev` for the client's own reasons. `details` keeps the
    raw gRPC text of a failed call, for debugging.
    """

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "", domain: str = "",
                 *, details: str = "") -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.details = details

    @classmethod
    def from_status(cls, status) -> LLMChatLinkerError:
        """From a `llmchatlinker.orchestrator.v1.Status` message."""
        code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
        return cls(code, status.message, status.reason, status.domain)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, address: str = "") -> LLMChatLinkerError:
        """From a failed gRPC call: the ErrorInfo the suite attached, else the client's own reason."""
        code = (error.code() if hasattr(error, "code") else None) or grpc.StatusCode.UNKNOWN
        details = (error.details() if hasattr(error, "details") else None) or str(error)
        info = error_info(error)
        if info is not None and info.reason:
            return cls(code, details, info.reason, info.domain, details=details)
        where = address or "its address"
        if code == grpc.StatusCode.UNAVAILABLE:
            return cls(code, f"cannot reach the suite at {where}: is `make run` running?",
                       SUITE_UNREACHABLE, DOMAIN, details=details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return cls(code, f"no final result from the suite at {where} within the deadline "
                             "(LLMCHATLINKER_CLIENT_TIMEOUT or timeout=)", CALL_DEADLINE_EXCEEDED, DOMAIN,
                       details=details)
        if code == grpc.StatusCode.CANCELLED:
            return cls(code, "the call was cancelled", CALL_CANCELLED, DOMAIN, details=details)
        return cls(code, f"the call to the suite at {where} failed: {details}", CALL_FAILED, DOMAIN,
                   details=details)


def stream_ended_early(address: str) -> LLMChatLinkerError:
    return LLMChatLinkerError(grpc.StatusCode.UNAVAILABLE,
                              f"the result stream from {address} ended without a final result",
                              STREAM_ENDED_EARLY, DOMAIN)


def blank_input() -> LLMChatLinkerError:
    return LLMChatLinkerError(grpc.StatusCode.INVALID_ARGUMENT,
                              "user_input is blank: it must contain at least one visible character",
                              INVALID_FIELD, DOMAIN)
