"""Content addressing: CIDs and multiformats, the blockstore, UnixFS import/export.

``from p2pd.blocks import CID`` works; the names are loaded on first use, so that
importing one small module of the package (``p2pd.blocks.multibase`` for a peer id)
does not import the rest.
"""

__all__ = ["CID", "Codec", "HashCode", "Multibase"]


def __getattr__(name: str):
    if name == "CID":
        from .cid import CID

        return CID
    if name == "Multibase":
        from .multibase import Multibase

        return Multibase
    if name in ("Codec", "HashCode"):
        from . import multicodec

        return getattr(multicodec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
