"""Networking, our own: the swarm (TCP, WebSocket, QUIC and relayed connections; Noise or
TLS, Yamux or mplex; identify, ping), the resource manager, NAT traversal (AutoNAT,
circuit relay v2, DCUtR, UPnP/NAT-PMP), perf and dnsaddr; the Host port the services see."""
