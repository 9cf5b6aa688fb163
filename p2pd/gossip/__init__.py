"""Pubsub: gossipsub v1.1 (with peer scoring) and floodsub. Sans-IO router, codec and
scoring here; the trio edge in :mod:`p2pd.gossip.service`."""
