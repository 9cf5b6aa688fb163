"""dag-pb, the protobuf node format UnixFS is built on (ipld dag-pb spec).

The schema is ``proto/merkledag.proto``; the codec is written by hand because
the canonical bytes put ``Links`` (field 2) *before* ``Data`` (field 1), which a
generated serializer does not do, and because a decoder of untrusted blocks must
refuse every non-canonical form a generic protobuf parser would accept. A node
whose bytes do not re-encode to the same bytes would have two CIDs for the same
data, so the decoder enforces, per the spec:

* PBNode: only fields 1 and 2, both length-delimited; all Links before Data;
  Data at most once and last.
* PBLink: only fields 1 (Hash), 2 (Name), 3 (Tsize), in that order, each at
  most once; Hash is required and must be a CID; Name is UTF-8.
* varints minimally encoded; lengths inside the buffer; nothing truncated.

Bounds (untrusted input): :data:`MAX_BLOCK_SIZE` bytes and :data:`MAX_LINKS`
links. Every failure raises :class:`~p2pd.errors.InvalidDagPB` saying what was
wrong where.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidCID, InvalidDagPB
from .cid import CID

#: Largest block the decoder accepts. Kubo refuses to build chunks over 1 MiB
#: and no importer we interoperate with emits bigger nodes, while Bitswap
#: messages top out at 4 MiB; 2 MiB leaves room for any honest node (a full
#: 174-link parent is ~8 KiB, a leaf at most 1 MiB plus a few header bytes)
#: and caps what a hostile peer can make us parse.
MAX_BLOCK_SIZE = 2 * 1024 * 1024

#: Most links one node may carry. Block size already limits a CIDv0 node to
#: about 50,000 links; this caps the Python objects a single block can cost.
MAX_LINKS = 1 << 16

#: Largest Tsize we accept or write: JavaScript readers hold it in a double.
MAX_TSIZE = (1 << 53) - 1

_WIRE_VARINT = 0
_WIRE_LEN = 2


@dataclass(frozen=True, slots=True)
class PBLink:
    """One link: the target's CID, an optional name and cumulative size.

    ``name=None`` and ``name=""`` differ on the wire (an empty Name field is
    written for ``""``); UnixFS file nodes use ``""`` as the reference
    importers do.
    """

    cid: CID
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links (in wire order) and optional opaque data."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


# -- protobuf primitives shared with the UnixFS codec -----------------------------------


def put_varint(out: bytearray, value: int) -> None:
    """Append ``value`` as a protobuf varint (unsigned, up to 64 bits)."""
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint_bytes(value: int) -> bytes:
    out = bytearray()
    put_varint(out, value)
    return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read one minimally-encoded varint of at most 10 bytes (64 bits) at ``pos``.

    Raises ``ValueError`` (callers convert it to their own error type) naming ``what``.
    """
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ValueError(f"truncated varint in {what} at offset {start}")
        byte = buf[pos]
        pos += 1
        if shift == 63 and byte > 1:
            raise ValueError(f"varint overflows 64 bits in {what} at offset {start}")
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                raise ValueError(f"varint not minimally encoded in {what} at offset {start}")
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError(f"varint longer than 10 bytes in {what} at offset {start}")


# -- encoding ---------------------------------------------------------------------------


def encode_link(link: PBLink) -> bytes:
    out = bytearray()
    cid = bytes(link.cid)
    out.append(0x0A)
    put_varint(out, len(cid))
    out += cid
    if link.name is not None:
        name = link.name.encode()
        out.append(0x12)
        put_varint(out, len(name))
        out += name
    if link.tsize is not None:
        if not 0 <= link.tsize <= MAX_TSIZE:
            raise InvalidDagPB(f"Tsize {link.tsize} is outside 0..2**53-1")
        out.append(0x18)
        put_varint(out, link.tsize)
    return bytes(out)


def encode_node(node: PBNode) -> bytes:
    """Canonical bytes of ``node``: each link (in the given order), then Data.

    Links are written in the order given; callers that build directories sort
    them by name bytes first (see :func:`sort_links`).
    """
    out = bytearray()
    for link in node.links:
        body = encode_link(link)
        out.append(0x12)
        put_varint(out, len(body))
        out += body
    if node.data is not None:
        out.append(0x0A)
        put_varint(out, len(node.data))
        out += node.data
    return bytes(out)


def encode(links: Sequence[PBLink], data: bytes | None) -> bytes:
    """Shorthand for ``encode_node(PBNode(tuple(links), data))``."""
    return encode_node(PBNode(tuple(links), data))


def sort_links(links: Sequence[PBLink]) -> list[PBLink]:
    """Links in the spec's canonical order: by Name's UTF-8 bytes (stable; no name first)."""
    return sorted(links, key=lambda link: (link.name or "").encode())


# -- decoding ---------------------------------------------------------------------------


def decode_node(block: bytes | bytearray | memoryview) -> PBNode:
    """Parse and validate a dag-pb block; raise :class:`InvalidDagPB` if it is not canonical."""
    size = len(block)
    if size > MAX_BLOCK_SIZE:
        raise InvalidDagPB(f"dag-pb block of {size} bytes exceeds the {MAX_BLOCK_SIZE}-byte limit")
    buf = memoryview(block)
    links: list[PBLink] = []
    data: bytes | None = None
    pos = 0
    try:
        while pos < size:
            key, pos = read_varint(buf, pos, size, "PBNode field key")
            field, wire = key >> 3, key & 7
            if field not in (1, 2):
                raise InvalidDagPB(
                    f"PBNode has unknown field {field} at offset {pos}; "
                    "only Data (1) and Links (2) are allowed"
                )
            if wire != _WIRE_LEN:
                raise InvalidDagPB(f"PBNode field {field} has wire type {wire}, expected 2 (bytes)")
            if data is not None:
                which = "Data" if field == 1 else "Links"
                raise InvalidDagPB(f"PBNode has {which} after Data; Data must come once, last")
            length, pos = read_varint(buf, pos, size, "PBNode field length")
            end = pos + length
            if end > size:
                raise InvalidDagPB(
                    f"PBNode field {field} claims {length} bytes but only {size - pos} remain"
                )
            if field == 1:
                data = bytes(buf[pos:end])
            else:
                if len(links) >= MAX_LINKS:
                    raise InvalidDagPB(f"dag-pb node has more than {MAX_LINKS} links")
                links.append(_decode_link(buf, pos, end, len(links)))
            pos = end
    except ValueError as exc:
        if isinstance(exc, InvalidDagPB):
            raise
        raise InvalidDagPB(f"malformed dag-pb block: {exc}") from None
    return PBNode(tuple(links), data)


def _decode_link(buf: memoryview, pos: int, end: int, index: int) -> PBLink:
    where = f"PBLink #{index}"
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    while pos < end:
        key, pos = read_varint(buf, pos, end, f"{where} field key")
        field, wire = key >> 3, key & 7
        if field not in (1, 2, 3):
            raise InvalidDagPB(f"{where} has unknown field {field}; only Hash, Name, Tsize allowed")
        if field <= last:
            names = {1: "Hash", 2: "Name", 3: "Tsize"}
            problem = "duplicate" if field == last else "out-of-order"
            raise InvalidDagPB(f"{where} has a {problem} {names[field]} field")
        last = field
        if field == 3:
            if wire != _WIRE_VARINT:
                raise InvalidDagPB(f"{where} Tsize has wire type {wire}, expected 0 (varint)")
            tsize, pos = read_varint(buf, pos, end, f"{where} Tsize")
            if tsize > MAX_TSIZE:
                raise InvalidDagPB(f"{where} Tsize {tsize} exceeds 2**53-1")
            continue
        if wire != _WIRE_LEN:
            what = "Hash" if field == 1 else "Name"
            raise InvalidDagPB(f"{where} {what} has wire type {wire}, expected 2 (bytes)")
        length, pos = read_varint(buf, pos, end, f"{where} field length")
        stop = pos + length
        if stop > end:
            raise InvalidDagPB(f"{where} field {field} claims {length} bytes, {end - pos} remain")
        raw = bytes(buf[pos:stop])
        if field == 1:
            try:
                cid = CID.from_bytes(raw)
            except InvalidCID as exc:
                raise InvalidDagPB(f"{where} Hash is not a valid CID: {exc}") from None
        else:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidDagPB(f"{where} Name is not valid UTF-8") from None
        pos = stop
    if cid is None:
        raise InvalidDagPB(f"{where} has no Hash; every link must name a CID")
    return PBLink(cid, name, tsize)
