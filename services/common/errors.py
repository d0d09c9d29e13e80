"""Domain errors shared by every unit, and their mapping to gRPC statuses with ErrorInfo."""

import functools
import inspect
import logging

import grpc
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule was broken; carries a gRPC code, an AIP-193 reason and a readable message."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "INTERNAL"

    def __init__(self, message: str, reason: str | None = None, **metadata: str):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = {k: str(v) for k, v in metadata.items()}

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs):
        """`class NotFound(DomainError, code=grpc.StatusCode.NOT_FOUND)`: the error's status code,
        whose name is also its default reason."""
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code, cls.default_reason = code, code.name


class InvalidArgument(DomainError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """The request is malformed: a field missing, out of range or of the wrong form."""


class NotFound(DomainError, code=grpc.StatusCode.NOT_FOUND):
    """What the request names does not exist (or no longer does)."""


class AlreadyExists(DomainError, code=grpc.StatusCode.ALREADY_EXISTS):
    """What the request would create exists already."""


class PermissionDenied(DomainError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The caller may not do this."""


class Unauthenticated(DomainError, code=grpc.StatusCode.UNAUTHENTICATED):
    """The caller is not known: no credential, or one that is not (or no longer) valid."""


class ResourceExhausted(DomainError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """The request goes past a limit (a size, a count of things at once)."""


class FailedPrecondition(DomainError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The request is well formed but the state it needs is not there."""


class Aborted(DomainError, code=grpc.StatusCode.ABORTED):
    """The operation stopped because of something that happened alongside it."""


class Unavailable(DomainError, code=grpc.StatusCode.UNAVAILABLE):
    """Something the service needs cannot be reached right now; trying again may succeed."""


class DeadlineExceeded(DomainError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The work did not finish in the time it had."""


class ResourceExhausted(DomainError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """Something grew past a limit the service sets."""


class Internal(DomainError, code=grpc.StatusCode.INTERNAL):
    """A bug or broken invariant; the caller can do nothing about it."""


# The most characters of a status message (and of each ErrorInfo metadata value): a status travels
# in the response's headers, which peers cap at a few KiB, and a message quoting what a caller sent
# (a username of a megabyte) must neither break the call nor echo the caller's bytes back.
MAX_STATUS_CHARS = 1_000


def _cut(text: str) -> str:
    return text if len(text) <= MAX_STATUS_CHARS else text[:MAX_STATUS_CHARS] + f"... (cut at {MAX_STATUS_CHARS:,} characters)"


def to_status(error: DomainError, domain: str) -> grpc.Status:
    """The rich status of an error: code, message and one google.rpc.ErrorInfo."""
    metadata = {key: _cut(value) for key, value in error.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=error.code.value[0], message=_cut(error.message), details=[detail])
    return rpc_status.to_status(status)


def internal_status(domain: str) -> grpc.Status:
    return to_status(Internal("internal error; see the service log", reason="INTERNAL"), domain)


def _failure_status(method_name: str, error: Exception, domain: str) -> grpc.Status:
    """The status of a failure that is not a DomainError: UNAVAILABLE when the unit's database
    could not be reached (callers retry it: every mutation carries a request id), else a
    logged INTERNAL."""
    if database_unreachable(error):
        log.warning("%s: the database is unreachable: %s", method_name, error)
        return to_status(Unavailable("the unit's database is unreachable; try again",
                                     reason="DATABASE_UNAVAILABLE"), domain)
    log.exception("%s failed", method_name)
    return internal_status(domain)


def database_unreachable(error: Exception) -> bool:
    """Whether `error` says the database cannot be reached right now (not the request's fault):
    a connection that dropped (SQLAlchemy invalidates it and its pool), a PostgreSQL connection
    refused or lost, no pooled connection free in time, or SQLite busy past its timeout."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    # psycopg2 raises OperationalError for the connection and the server's state (never for a
    # statement's own fault); sqlite3 raises it for bad SQL too, so only its busy error counts.
    if isinstance(error, sqlalchemy.exc.OperationalError):
        return type(error.orig).__module__.startswith("psycopg2") or str(error.orig) == "database is locked"
    return False


def error_info(rpc_error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo a peer attached to a failed call, if any."""
    status = rpc_status.from_call(rpc_error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def maps_errors(domain: str):
    """Decorates servicer methods (sync, async, or async generators) so that a DomainError
    becomes its status, an unreachable database UNAVAILABLE, and anything else a logged INTERNAL."""

    def decorate(method):
        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def stream_wrapper(self, request, context):
                try:
                    async for item in method(self, request, context):
                        yield item
                except DomainError as error:
                    await context.abort_with_status(to_status(error, domain))
                except Exception as error:  # noqa: BLE001 - the boundary of the RPC
                    if _is_abort(error):
                        raise
                    await context.abort_with_status(_failure_status(method.__name__, error, domain))
            return stream_wrapper

        if inspect.iscoroutinefunction(method):
            @functools.wraps(method)
            async def async_wrapper(self, request, context):
                try:
                    return await method(self, request, context)
                except DomainError as error:
                    await context.abort_with_status(to_status(error, domain))
                except Exception as error:  # noqa: BLE001
                    if _is_abort(error):
                        raise
                    await context.abort_with_status(_failure_status(method.__name__, error, domain))
            return async_wrapper

        @functools.wraps(method)
        def sync_wrapper(self, request, context):
            try:
                return method(self, request, context)
            except DomainError as error:
                context.abort_with_status(to_status(error, domain))
            except Exception as error:  # noqa: BLE001
                if _is_abort(error):
                    raise
                context.abort_with_status(_failure_status(method.__name__, error, domain))
        return sync_wrapper

    return decorate


def _is_abort(error: Exception) -> bool:
    # context.abort raises a bare Exception (sync) or grpc.aio.AbortError; let them through.
    return type(error) is Exception or type(error).__name__ == "AbortError"


# Keep the code_pb2 import meaningful for readers mapping numbers to names.
CODE_NAMES = {v: k for k, v in code_pb2.Code.items()}
