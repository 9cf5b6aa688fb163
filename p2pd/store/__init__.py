"""The node's persistent state: one RocksDB with typed key spaces (see :mod:`.datastore`)."""

from .datastore import SPACES, Batch, Datastore, KeySpace, prefix_end

__all__ = ["SPACES", "Batch", "Datastore", "KeySpace", "prefix_end"]
