"""p2pd: a libp2p peer-to-peer daemon on trio."""

__version__ = "0.1.0"
