"""RADIUS clients: who may talk to simgate, with which secret.

Owns: source address -> configured client, by exact address first and then by the most specific
configured network (an address or a CIDR, DESIGN §7); the per-client pre-keyed secret and
counters.

Invariants: the secret is chosen by the packet's source IP (RFC 2865 §3); lookups of addresses
already seen are one dict access; the memo of addresses is bounded, so a flood from many
unknown sources cannot grow memory without limit.

Must not: import asyncio, logging or metrics.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from core.config import Client
from core.radius.auth import Secret
from core.service.stats import ClientCounters

_MEMO_LIMIT: Final = 65_536


class ClientEntry:
    """One configured client, ready for the hot path."""

    __slots__ = ("counters", "dae_port", "name", "require_message_authenticator", "secret")

    def __init__(self, client: Client) -> None:
        self.name = client.name
        self.secret = Secret(client.secret.encode())
        self.require_message_authenticator = client.require_message_authenticator
        self.dae_port = client.dae_port
        self.counters = ClientCounters(client.name)


class Clients:
    """Find the client a datagram came from."""

    def __init__(self, clients: tuple[Client, ...]) -> None:
        self.entries = tuple(ClientEntry(client) for client in clients)
        ordered = sorted(
            zip(clients, self.entries, strict=True), key=lambda pair: -pair[0].network.prefixlen
        )
        self._networks = [(client.network, entry) for client, entry in ordered]
        self._memo: dict[str, ClientEntry | None] = {}

    def find(self, address: str) -> ClientEntry | None:
        """Return the client for a source address, or None when it is not configured."""
        try:
            return self._memo[address]
        except KeyError:
            pass
        found = self._match(address)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[address] = found
        return found

    def _match(self, address: str) -> ClientEntry | None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for network, entry in self._networks:
            if ip.version == network.version and ip in network:
                return entry
        return None
