"""Networking over py-libp2p: host construction (Noise only, Yamux/mplex), transports."""
