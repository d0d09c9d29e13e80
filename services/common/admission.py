"""Who may call a server: TLS credentials for both ends, and the internal token every unit checks.

The orchestrator sends `authorization: Bearer <LLMCHATLINKER_INTERNAL_TOKEN>` on every unit call
(`call_metadata`); a unit with a token set refuses any other call with UNAUTHENTICATED, except
health (what probes and load balancers ask) and reflection (it shows the schema, which is public
in protos/, and keeps `grpcurl list` working; nothing behind it reads or writes data).
"""

import dataclasses
import hmac

import grpc

from services.common.config import ClientTls, ServerTls
from services.common.errors import DomainError, to_status

HEADER = "authorization"
SCHEME = "Bearer "
# Method-name prefixes answered without the token.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class Unauthenticated(DomainError, code=grpc.StatusCode.UNAUTHENTICATED):
    """The call does not carry the internal credential."""


@dataclasses.dataclass(frozen=True)
class Admission:
    """How a server admits callers: over TLS when `tls` is set (with client certificates when it
    names a CA), and only with `internal_token` on every call but health and reflection when set."""

    tls: ServerTls | None = None
    internal_token: str | None = dataclasses.field(default=None, repr=False)
    # The ErrorInfo domain of a refusal: the server's own.
    domain: str = "llmchatlinker.dev"


OPEN = Admission()


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """What the orchestrator sends with every unit call."""
    return ((HEADER, SCHEME + token),)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(tls.private_key, tls.certificate_chain)], root_certificates=tls.client_ca,
                                       require_client_auth=tls.mutual)


def channel_credentials(tls: ClientTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.private_key,
                                        certificate_chain=tls.certificate_chain)


class _TokenCheck:
    """The verdict on a call, shared by the thread-pool and asyncio interceptors. An admitted call
    costs a scan of its few metadata entries and one constant-time compare; refusals are built once."""

    def __init__(self, token: str, domain: str):
        self._expected = SCHEME + token
        self._missing = to_status(Unauthenticated(
            f"this unit answers the orchestrator only, and the call carries no internal credential "
            f"({HEADER}: {SCHEME}<LLMCHATLINKER_INTERNAL_TOKEN>)", reason="INTERNAL_CREDENTIAL_MISSING"), domain)
        self._wrong = to_status(Unauthenticated(
            "this unit answers the orchestrator only, and the call's internal credential is not the unit's "
            "(LLMCHATLINKER_INTERNAL_TOKEN differs)", reason="INTERNAL_CREDENTIAL_INVALID"), domain)

    def refusal(self, details: grpc.HandlerCallDetails) -> grpc.Status | None:
        """None when the call may proceed, else the status it is refused with."""
        refusal = self._missing
        for key, value in details.invocation_metadata:
            if key == HEADER:
                try:
                    if hmac.compare_digest(value, self._expected):
                        return None
                except TypeError:  # a value that is not ASCII is no token of ours
                    pass
                refusal = self._wrong
                break
        return None if details.method.startswith(OPEN_SERVICES) else refusal


def _shape(handler) -> tuple[bool, bool]:
    return (handler.request_streaming, handler.response_streaming) if handler is not None else (False, False)


_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class TokenInterceptor(grpc.ServerInterceptor):
    """The token check on a thread-pool server (grpc.server)."""

    def __init__(self, token: str, domain: str):
        self._check = _TokenCheck(token, domain)

    def intercept_service(self, continuation, handler_call_details):
        refusal = self._check.refusal(handler_call_details)
        if refusal is None:
            return continuation(handler_call_details)

        def refuse(_request, context):
            context.abort_with_status(refusal)

        return _MAKERS[_shape(continuation(handler_call_details))](refuse)


class AsyncTokenInterceptor(grpc.aio.ServerInterceptor):
    """The token check on an asyncio server (grpc.aio.server)."""

    def __init__(self, token: str, domain: str):
        self._check = _TokenCheck(token, domain)

    async def intercept_service(self, continuation, handler_call_details):
        refusal = self._check.refusal(handler_call_details)
        if refusal is None:
            return await continuation(handler_call_details)

        async def refuse(_request, context):
            await context.abort(refusal.code, refusal.details, refusal.trailing_metadata)

        return _MAKERS[_shape(await continuation(handler_call_details))](refuse)
