"""UnixFS ``Data`` messages (ipfs/specs UNIXFS.md), carried in a dag-pb node's Data.

Encoding is hand-written so the bytes equal the reference importers' (kubo,
ipfs-unixfs): fields in number order, ``Data`` left out when empty, ``filesize``
always written for File and Raw nodes (even 0), ``blocksizes`` one non-packed
varint field each, ``mode`` left out when it is the default (0644 files, 0755
directories). Any difference there changes every CID above the node.

Decoding follows protobuf rules as the reference readers do (fields in any
order, unknown fields skipped, packed or unpacked ``blocksizes``) but bounded:
singular fields at most once, ``blocksizes`` no more than
:data:`~p2pd.blocks.dagpb.MAX_LINKS`, values in range, the block no larger than
:data:`~p2pd.blocks.dagpb.MAX_BLOCK_SIZE`. Failures raise
:class:`~p2pd.errors.InvalidUnixFS`. :func:`check_node` checks a node's Data
against its links before an exporter trusts the sizes.
"""

import enum
import struct
from dataclasses import dataclass, field

from ..errors import InvalidUnixFS
from .dagpb import MAX_BLOCK_SIZE, MAX_LINKS, PBNode, put_varint, read_varint

#: Largest file size we accept in metadata: readers in JavaScript use a double.
MAX_FILESIZE = (1 << 53) - 1

DEFAULT_FILE_MODE = 0o644
DEFAULT_DIRECTORY_MODE = 0o755


class DataType(enum.IntEnum):
    """``Data.Type``."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixTime:
    """``mtime``: seconds since the epoch (may be negative) and optional nanoseconds."""

    seconds: int
    nanos: int | None = None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded UnixFS Data message."""

    type: DataType
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = field(default_factory=tuple)
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: UnixTime | None = None

    @property
    def is_file(self) -> bool:
        return self.type in (DataType.FILE, DataType.RAW)

    def content_size(self) -> int:
        """Bytes of file content under this node: its own data plus every child's."""
        return len(self.data) + sum(self.blocksizes)


def encode(msg: UnixFSData) -> bytes:
    """The reference importers' bytes for ``msg``."""
    out = bytearray()
    out += b"\x08"
    put_varint(out, int(msg.type))
    if msg.data:
        out += b"\x12"
        put_varint(out, len(msg.data))
        out += msg.data
    if msg.is_file:
        filesize = msg.content_size() if msg.filesize is None else msg.filesize
        if filesize > MAX_FILESIZE:
            raise InvalidUnixFS(f"file size {filesize} exceeds 2**53-1; readers could not hold it")
        out += b"\x18"
        put_varint(out, filesize)
    for size in msg.blocksizes:
        out += b"\x20"
        put_varint(out, size)
    if msg.hash_type is not None:
        out += b"\x28"
        put_varint(out, msg.hash_type)
    if msg.fanout is not None:
        out += b"\x30"
        put_varint(out, msg.fanout)
    if msg.mode is not None:
        default = (
            DEFAULT_DIRECTORY_MODE
            if msg.type in (DataType.DIRECTORY, DataType.HAMT_SHARD)
            else DEFAULT_FILE_MODE
        )
        if msg.mode != default:
            out += b"\x38"
            put_varint(out, msg.mode)
    if msg.mtime is not None:
        inner = bytearray(b"\x08")
        put_varint(inner, msg.mtime.seconds & 0xFFFFFFFFFFFFFFFF)
        if msg.mtime.nanos is not None:
            inner += b"\x15" + struct.pack("<I", msg.mtime.nanos)
        out += b"\x42"
        put_varint(out, len(inner))
        out += inner
    return bytes(out)


def file_leaf_prefix(chunk_len: int) -> tuple[bytes, bytes]:
    """dag-pb bytes around a chunk for a UnixFS File leaf: ``prefix + chunk + suffix``.

    Lets the importer build a CIDv0 leaf with one concatenation instead of
    encoding two nested messages per chunk. An empty chunk has no Data field.
    """
    inner_head = bytearray(b"\x08\x02")
    if chunk_len:
        inner_head += b"\x12"
        put_varint(inner_head, chunk_len)
    suffix = bytearray(b"\x18")
    put_varint(suffix, chunk_len)
    inner_len = len(inner_head) + chunk_len + len(suffix)
    prefix = bytearray(b"\x0a")
    put_varint(prefix, inner_len)
    prefix += inner_head
    return bytes(prefix), bytes(suffix)


def decode(raw: bytes | bytearray | memoryview) -> UnixFSData:
    """Parse a UnixFS Data message; raise :class:`InvalidUnixFS` when malformed."""
    size = len(raw)
    if size > MAX_BLOCK_SIZE:
        raise InvalidUnixFS(f"UnixFS Data of {size} bytes exceeds the {MAX_BLOCK_SIZE}-byte limit")
    buf = memoryview(raw)
    seen: set[int] = set()
    values: dict[int, object] = {}
    blocksizes: list[int] = []
    pos = 0
    try:
        while pos < size:
            key, pos = read_varint(buf, pos, size, "UnixFS field key")
            num, wire = key >> 3, key & 7
            if num == 0:
                raise InvalidUnixFS("UnixFS Data has a field numbered 0")
            if num == 4 and wire == 2:  # packed blocksizes
                length, pos = read_varint(buf, pos, size, "UnixFS blocksizes length")
                end = _end(pos, length, size, "blocksizes")
                while pos < end:
                    value, pos = read_varint(buf, pos, end, "UnixFS blocksizes")
                    _append_blocksize(blocksizes, value)
                continue
            if num == 4:
                _expect(wire, 0, "blocksizes")
                value, pos = read_varint(buf, pos, size, "UnixFS blocksizes")
                _append_blocksize(blocksizes, value)
                continue
            if num in seen and num <= 8:
                raise InvalidUnixFS(f"UnixFS Data repeats field {num}")
            seen.add(num)
            if num in (1, 3, 5, 6, 7):
                _expect(wire, 0, _NAMES[num])
                values[num], pos = read_varint(buf, pos, size, f"UnixFS {_NAMES[num]}")
            elif num in (2, 8):
                _expect(wire, 2, _NAMES[num])
                length, pos = read_varint(buf, pos, size, f"UnixFS {_NAMES[num]} length")
                end = _end(pos, length, size, _NAMES[num])
                values[num] = bytes(buf[pos:end])
                pos = end
            else:
                pos = _skip(buf, pos, size, wire, num)
    except ValueError as exc:
        if isinstance(exc, InvalidUnixFS):
            raise
        raise InvalidUnixFS(f"malformed UnixFS Data: {exc}") from None
    if 1 not in values:
        raise InvalidUnixFS("UnixFS Data has no Type (field 1 is required)")
    try:
        kind = DataType(values[1])
    except ValueError:
        raise InvalidUnixFS(f"unknown UnixFS Type {values[1]}") from None
    filesize = values.get(3)
    if filesize is not None and filesize > MAX_FILESIZE:  # type: ignore[operator]
        raise InvalidUnixFS(f"UnixFS filesize {filesize} exceeds 2**53-1")
    mode = values.get(7)
    if mode is not None and mode > 0xFFFFFFFF:  # type: ignore[operator]
        raise InvalidUnixFS(f"UnixFS mode {mode} does not fit in 32 bits")
    mtime = _decode_mtime(values[8]) if 8 in values else None  # type: ignore[arg-type]
    return UnixFSData(
        type=kind,
        data=values.get(2, b""),  # type: ignore[arg-type]
        filesize=filesize,  # type: ignore[arg-type]
        blocksizes=tuple(blocksizes),
        hash_type=values.get(5),  # type: ignore[arg-type]
        fanout=values.get(6),  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        mtime=mtime,
    )


_NAMES = {
    1: "Type",
    2: "Data",
    3: "filesize",
    4: "blocksizes",
    5: "hashType",
    6: "fanout",
    7: "mode",
    8: "mtime",
}


def _expect(wire: int, want: int, name: str) -> None:
    if wire != want:
        raise InvalidUnixFS(f"UnixFS {name} has wire type {wire}, expected {want}")


def _end(pos: int, length: int, size: int, name: str) -> int:
    end = pos + length
    if end > size:
        raise InvalidUnixFS(f"UnixFS {name} claims {length} bytes but only {size - pos} remain")
    return end


def _append_blocksize(blocksizes: list[int], value: int) -> None:
    if len(blocksizes) >= MAX_LINKS:
        raise InvalidUnixFS(f"UnixFS Data has more than {MAX_LINKS} blocksizes")
    if value > MAX_FILESIZE:
        raise InvalidUnixFS(f"UnixFS blocksize {value} exceeds 2**53-1")
    blocksizes.append(value)


def _skip(buf: memoryview, pos: int, size: int, wire: int, num: int) -> int:
    """Step over an unknown field, as protobuf readers do (forward compatibility)."""
    if wire == 0:
        return read_varint(buf, pos, size, f"UnixFS field {num}")[1]
    if wire == 1:
        return _end(pos, 8, size, f"field {num}")
    if wire == 2:
        length, pos = read_varint(buf, pos, size, f"UnixFS field {num} length")
        return _end(pos, length, size, f"field {num}")
    if wire == 5:
        return _end(pos, 4, size, f"field {num}")
    raise InvalidUnixFS(f"UnixFS field {num} has unsupported wire type {wire}")


def _decode_mtime(raw: bytes) -> UnixTime:
    size = len(raw)
    seconds: int | None = None
    nanos: int | None = None
    pos = 0
    while pos < size:
        key, pos = read_varint(raw, pos, size, "UnixTime field key")
        num, wire = key >> 3, key & 7
        if num == 1:
            _expect(wire, 0, "mtime.Seconds")
            if seconds is not None:
                raise InvalidUnixFS("UnixTime repeats Seconds")
            value, pos = read_varint(raw, pos, size, "UnixTime Seconds")
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif num == 2:
            _expect(wire, 5, "mtime.FractionalNanoseconds")
            if nanos is not None:
                raise InvalidUnixFS("UnixTime repeats FractionalNanoseconds")
            end = _end(pos, 4, size, "mtime.FractionalNanoseconds")
            (nanos,) = struct.unpack("<I", raw[pos:end])
            if not 1 <= nanos <= 999_999_999:
                raise InvalidUnixFS(f"UnixTime nanoseconds {nanos} outside 1..999999999")
            pos = end
        else:
            pos = _skip(memoryview(raw), pos, size, wire, num)
    if seconds is None:
        raise InvalidUnixFS("UnixTime has no Seconds (required)")
    return UnixTime(seconds, nanos)


def decode_node(node: PBNode) -> UnixFSData:
    """The UnixFS message in a dag-pb node's Data, checked against its links."""
    if node.data is None:
        raise InvalidUnixFS("dag-pb node has no Data, so it is not a UnixFS node")
    msg = decode(node.data)
    check_node(msg, node)
    return msg


def check_node(msg: UnixFSData, node: PBNode) -> None:
    """Refuse a UnixFS node whose sizes and links disagree (exporters rely on them)."""
    if msg.is_file:
        if len(msg.blocksizes) != len(node.links):
            raise InvalidUnixFS(
                f"UnixFS file node has {len(node.links)} links but {len(msg.blocksizes)} blocksizes"
            )
        if msg.filesize is not None and msg.filesize != msg.content_size():
            raise InvalidUnixFS(
                f"UnixFS file node says filesize {msg.filesize} but its data and blocksizes add "
                f"up to {msg.content_size()}"
            )
    elif msg.type is DataType.DIRECTORY:
        if msg.blocksizes or msg.filesize is not None:
            raise InvalidUnixFS("UnixFS directory node carries file sizes")
        names: set[str] = set()
        for link in node.links:
            if not link.name:
                raise InvalidUnixFS("UnixFS directory has a link without a name")
            if link.name in names:
                raise InvalidUnixFS(f"UnixFS directory has two entries named {link.name!r}")
            names.add(link.name)
    elif msg.type is DataType.SYMLINK:
        if node.links:
            raise InvalidUnixFS("UnixFS symlink node has links")


__all__ = [
    "DataType",
    "UnixFSData",
    "UnixTime",
    "check_node",
    "decode",
    "decode_node",
    "encode",
    "file_leaf_prefix",
]
