"""A base for py-libp2p swarm notifees: every event is a no-op until a subclass overrides it.

py-libp2p calls all six methods on every registered notifee; services care about one or two.
"""

from __future__ import annotations


class SwarmNotifee:
    """Ignores every swarm event; subclasses override the ones they need."""

    async def connected(self, network, conn) -> None:
        pass

    async def disconnected(self, network, conn) -> None:
        pass

    async def opened_stream(self, network, stream) -> None:
        pass

    async def closed_stream(self, network, stream) -> None:
        pass

    async def listen(self, network, multiaddr) -> None:
        pass

    async def listen_close(self, network, multiaddr) -> None:
        pass
