"""Kademlia DHT (libp2p kad-dht, /ipfs/kad/1.0.0): the sans-IO core.

``keyspace`` (XOR distance over SHA-256 keys), ``routing`` (the k-bucket routing table
with replacement caches) and ``lookup`` (the iterative, alpha-parallel lookup state
machine). No sockets and no clocks here: callers pass ``now`` and deliver responses, so
the same code runs in the daemon and in the 10,000-node simulator (bench/kad_sim.py).
"""
