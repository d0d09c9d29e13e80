"""Which network addresses a provider may be called at.

Never a link-local address (169.254.0.0/16, fe80::/10) or a cloud metadata service: they answer
with the host's credentials. Loopback and private ranges (everything that is not globally
routable) only where LLMCHATLINKER_LLM_UNIT_ALLOW_PRIVATE_ENDPOINTS allows them: a provider is
called with the suite's own network position, so an endpoint in them reaches what only the suite
should. An IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64) is judged by the IPv4 one.
"""

import dataclasses
import ipaddress

# The refusals, as they read in an error message.
NEVER = "a link-local or metadata address, which is never called"
PRIVATE = "a loopback or private address, which LLMCHATLINKER_LLM_UNIT_ALLOW_PRIVATE_ENDPOINTS=false refuses"
UNCHECKABLE = "an address that cannot be checked"
# Metadata services outside 169.254.0.0/16: Alibaba Cloud, Oracle Cloud, AWS over IPv6.
METADATA = frozenset(map(ipaddress.ip_address, ("100.100.100.200", "192.0.0.192", "fd00:ec2::254")))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclasses.dataclass(frozen=True)
class Policy:
    allow_private: bool

    def refusal(self, address: str) -> str | None:
        """Why a provider may not be called at the IP address `address`; None when it may."""
        try:
            ip = _carried(ipaddress.ip_address(address))
        except ValueError:
            return UNCHECKABLE
        if ip.is_link_local or ip in METADATA:
            return NEVER
        if not ip.is_global and not self.allow_private:
            return PRIVATE
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why an endpoint naming `host` is refused before any lookup: an IP address refused, or a
        name that is always loopback. Other names are judged by what they resolve to, when called."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            is_loopback_name = host.lower() in _LOCAL_NAMES or host.lower().rstrip(".").endswith(".localhost")
            return PRIVATE if is_loopback_name and not self.allow_private else None
        return self.refusal(host)


def _carried(ip: Address) -> Address:
    """The IPv4 address an IPv6 address stands for, else the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip
