"""The control socket: the libp2p daemon protocol (p2pd.proto) served over a Unix or TCP socket."""
