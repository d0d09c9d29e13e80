"""The aiohttp resolver and connector that hold every connection to a provider to addresses.Policy.

The check is on the address actually connected to, when the request is made, not on the endpoint
when it was stored: a name may resolve elsewhere by then (DNS rebinding). The resolver hands
aiohttp only the allowed addresses of a name (aiohttp connects to what its resolver returns,
without looking the name up again), and the connector checks the peer of every connection it
hands out, new or pooled, before a byte of the request is written (this also covers endpoints
that name an IP address, which aiohttp does not resolve).
"""

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.llm_unit.addresses import UNCHECKABLE, Policy


class AddressRefused(Exception):
    """The provider's host resolved to, or the connection reached, an address the policy refuses."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(f"{host} is at {address}: {why}")
        self.host, self.address, self.why = host, address, why


class Resolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default resolver when None) and keeps the allowed answers."""

    def __init__(self, policy: Policy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [answer for answer in answers if self._policy.refusal(answer["host"]) is None]
        if not allowed and answers:
            first = answers[0]["host"]
            raise AddressRefused(host, first, self._policy.refusal(first) or UNCHECKABLE)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class Connector(aiohttp.TCPConnector):
    """A TCPConnector resolving through Resolver and refusing a connection whose peer the policy refuses."""

    def __init__(self, policy: Policy, resolver: AbstractResolver | None = None, **kwargs) -> None:
        super().__init__(resolver=Resolver(policy, resolver), **kwargs)
        self._policy = policy

    async def connect(self, req, traces, timeout):
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        address = str(peer[0]) if peer else "an unknown address"
        why = self._policy.refusal(address) if peer else UNCHECKABLE
        if why is not None:
            connection.close()
            raise AddressRefused(req.url.raw_host or "", address, why)
        return connection

    async def close(self, *args, **kwargs):
        try:
            return await super().close(*args, **kwargs)
        finally:
            await self._resolver.close()
