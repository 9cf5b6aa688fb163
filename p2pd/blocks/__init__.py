"""Content addressing: CIDs and multiformats, the blockstore, UnixFS import/export."""

from .cid import CID
from .multibase import Multibase
from .multicodec import Codec, HashCode

__all__ = ["CID", "Codec", "HashCode", "Multibase"]
