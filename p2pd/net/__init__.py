"""Networking: the host over py-libp2p (transports, swarm, identify, ping) with our own
Noise transport channel and Yamux muxer, perf, dnsaddr."""
