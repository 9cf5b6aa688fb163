"""UnixFS Data codec, balanced importer and verifying exporter (in memory, no Node)."""

import io
import os
import random

import pytest

from p2pd.blocks import dagpb, unixfs
from p2pd.blocks.cid import CID
from p2pd.blocks.exporter import export_file, export_path, stat
from p2pd.blocks.importer import (
    BalancedLayout,
    ImportOptions,
    import_file,
    import_path,
    parse_chunker,
)
from p2pd.blocks.multicodec import Codec
from p2pd.blocks.unixfs import DataType, UnixFSData, UnixTime
from p2pd.errors import CorruptBlock, InvalidDagPB, InvalidUnixFS
from p2pd.proto import unixfs_pb2


class MemoryStore:
    """A verifying in-memory block sink/source, recording each put_many batch."""

    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}
        self.batches: list[int] = []

    def put_many(self, blocks):
        batch = list(blocks)
        for cid, data in batch:
            assert cid.verify(data), f"importer produced a block not matching {cid}"
            self.blocks[cid] = bytes(data)
        self.batches.append(len(batch))

    def get(self, cid):
        return self.blocks[cid]


def _data(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


# -- Data codec -------------------------------------------------------------------------


def test_well_known_encodings():
    assert unixfs.encode(UnixFSData(DataType.DIRECTORY)) == b"\x08\x01"
    assert unixfs.encode(UnixFSData(DataType.FILE)) == b"\x08\x02\x18\x00"
    assert unixfs.encode(UnixFSData(DataType.FILE, b"hi")) == b"\x08\x02\x12\x02hi\x18\x02"


def test_default_modes_are_left_out_as_the_reference_does():
    assert unixfs.encode(UnixFSData(DataType.FILE, mode=0o644)) == b"\x08\x02\x18\x00"
    assert unixfs.encode(UnixFSData(DataType.DIRECTORY, mode=0o755)) == b"\x08\x01"
    assert unixfs.encode(UnixFSData(DataType.FILE, mode=0o600)).endswith(b"\x38\x80\x03")


def test_full_message_round_trips_and_matches_the_schema():
    msg = UnixFSData(
        DataType.FILE,
        b"abc",
        filesize=10,
        blocksizes=(3, 4),
        hash_type=0x22,
        fanout=256,
        mode=0o600,
        mtime=UnixTime(-5, 7),
    )
    raw = unixfs.encode(msg)
    assert unixfs.decode(raw) == msg
    pb = unixfs_pb2.Data.FromString(raw)
    assert (pb.Type, pb.Data, pb.filesize, list(pb.blocksizes)) == (2, b"abc", 10, [3, 4])
    assert (pb.hashType, pb.fanout, pb.mode) == (0x22, 256, 0o600)
    assert (pb.mtime.Seconds, pb.mtime.FractionalNanoseconds) == (-5, 7)
    assert pb.SerializeToString() == raw


def test_packed_blocksizes_and_unknown_fields_are_read():
    raw = b"\x08\x02\x18\x03\x22\x02\x01\x02\x50\x07"  # packed [1, 2], unknown field 10
    assert unixfs.decode(raw).blocksizes == (1, 2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no Type"),
        (b"\x08\x09", "unknown UnixFS Type 9"),
        (b"\x08\x02\x08\x02", "repeats field 1"),
        (b"\x08\x02\x12\x05ab", "claims 5 bytes"),
        (b"\x0a\x00", "Type has wire type 2"),
        (b"\x08\x02\x4b", "unsupported wire type 3"),
        (b"\x08\x02\x42\x00", "no Seconds"),
        (b"\x08\x02\x42\x07\x08\x01\x15\x00\xca\x9a\x3b", "nanoseconds"),
        (b"\x08\x02\x38\x80\x80\x80\x80\x10", "32 bits"),
    ],
)
def test_malformed_data_messages_are_refused(raw, message):
    with pytest.raises(InvalidUnixFS, match=message):
        unixfs.decode(raw)


def test_file_node_sizes_must_agree_with_links():
    link = dagpb.PBLink(CID.for_block(b"x"), "", 1)
    good = UnixFSData(DataType.FILE, filesize=1, blocksizes=(1,))
    unixfs.check_node(good, dagpb.PBNode((link,)))
    with pytest.raises(InvalidUnixFS, match="1 links but 2 blocksizes"):
        unixfs.check_node(UnixFSData(DataType.FILE, blocksizes=(1, 1)), dagpb.PBNode((link,)))
    with pytest.raises(InvalidUnixFS, match="filesize 5"):
        unixfs.check_node(
            UnixFSData(DataType.FILE, filesize=5, blocksizes=(1,)), dagpb.PBNode((link,))
        )


def test_directory_entries_need_unique_names():
    link = dagpb.PBLink(CID.for_block(b"x"), "a", 1)
    with pytest.raises(InvalidUnixFS, match="two entries"):
        unixfs.check_node(UnixFSData(DataType.DIRECTORY), dagpb.PBNode((link, link)))


# -- importer ---------------------------------------------------------------------------


def test_kubo_cli_defaults_for_raw_leaves():
    assert ImportOptions(cid_version=0).raw_leaves is False
    assert ImportOptions(cid_version=1).raw_leaves is True
    assert ImportOptions(cid_version=1, raw_leaves=False).raw_leaves is False
    with pytest.raises(ValueError):
        ImportOptions(cid_version=2)


def test_parse_chunker_accepts_size_n_only():
    assert parse_chunker("size-262144") == 262144
    for bad in ("rabin", "size-0", "size-x", "size-2000000"):
        with pytest.raises(ValueError):
            parse_chunker(bad)


def test_single_chunk_file_root_is_the_leaf():
    data = _data(1000)
    store = MemoryStore()
    result = import_file(io.BytesIO(data), store, cid_version=1)
    assert result.cid == CID.for_block(data, Codec.RAW)
    assert (result.size, result.tsize, result.blocks) == (1000, 1000, 1)


def test_empty_file_is_one_empty_leaf():
    assert str(import_file(io.BytesIO(b"")).cid) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert import_file(io.BytesIO(b""), cid_version=1).cid == CID.for_block(b"", Codec.RAW)


def _shape(store: MemoryStore, cid: CID) -> object:
    """The tree as nested lists of leaf sizes."""
    if cid.codec == Codec.RAW:
        return len(store.blocks[cid])
    node = dagpb.decode_node(store.blocks[cid])
    msg = unixfs.decode_node(node)
    if not node.links:
        return len(msg.data)
    return [_shape(store, link.cid) for link in node.links]


def test_balanced_layout_groups_leaves_then_parents():
    store = MemoryStore()
    import_file(io.BytesIO(_data(10)), store, chunk_size=1, max_links=3, cid_version=1)
    root = next(reversed(store.blocks))
    assert _shape(store, root) == [[[1, 1, 1], [1, 1, 1], [1, 1, 1]], [[1]]]


def test_exactly_full_level_needs_no_extra_parent():
    store = MemoryStore()
    result = import_file(io.BytesIO(_data(9)), store, chunk_size=1, max_links=3, cid_version=1)
    assert _shape(store, result.cid) == [[1, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert result.blocks == 9 + 3 + 1


def test_layout_is_independent_of_read_buffer_size():
    data = _data(5000)
    roots = {
        import_file(io.BytesIO(data), chunk_size=7, max_links=5, read_buffer=rb).cid
        for rb in (7, 70, 100, 1 << 20)
    }
    assert len(roots) == 1


def test_only_hash_writes_nothing_and_gives_the_same_cid():
    data = _data(300_000)
    store = MemoryStore()
    stored = import_file(io.BytesIO(data), store)
    assert import_file(io.BytesIO(data)).cid == stored.cid
    assert len(store.blocks) == stored.blocks == 3


def test_blocks_go_out_in_one_batch_per_read_buffer_plus_the_root():
    store = MemoryStore()
    import_file(io.BytesIO(_data(1000)), store, chunk_size=10, read_buffer=400, cid_version=1)
    assert store.batches == [40, 40, 20, 1]  # 100 leaves by buffer, then the root
    assert sum(store.batches) == len(store.blocks)


def test_parent_nodes_carry_sizes_the_exporter_checks():
    store = MemoryStore()
    result = import_file(io.BytesIO(_data(2500)), store, chunk_size=1000)
    info = stat(store, result.cid)
    assert info.filesize == 2500 and info.blocksizes == (1000, 1000, 500)


def test_a_single_raw_block_file_states_its_length_as_content_size():
    # CAT announces content_size() before the bytes: it was 0 for a one-block raw-leaves
    # file, and every client that checks the count (p2pd cat) called it truncated.
    store = MemoryStore()
    result = import_file(io.BytesIO(_data(4614)), store, raw_leaves=True)
    assert result.cid.codec == Codec.RAW
    assert stat(store, result.cid).content_size() == 4614
    assert b"".join(export_file(store, result.cid)) == _data(4614)


def test_balanced_layout_refuses_to_finish_without_leaves():
    with pytest.raises(ValueError):
        BalancedLayout(ImportOptions()).finish([])


# -- exporter ---------------------------------------------------------------------------


@pytest.mark.parametrize("cid_version", [0, 1])
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 7 * 1000 + 3])
def test_export_returns_the_exact_bytes(size, cid_version):
    data = _data(size)
    store = MemoryStore()
    result = import_file(
        io.BytesIO(data), store, chunk_size=1000, max_links=3, cid_version=cid_version
    )
    assert b"".join(export_file(store, result.cid)) == data


def test_tampered_block_is_detected():
    store = MemoryStore()
    result = import_file(io.BytesIO(_data(5000)), store, chunk_size=1000, cid_version=1)
    leaf = next(cid for cid in store.blocks if cid.codec == Codec.RAW)
    store.blocks[leaf] = b"\x00" + store.blocks[leaf][1:]
    with pytest.raises(CorruptBlock):
        b"".join(export_file(store, result.cid))


def _put(store: MemoryStore, links, msg: UnixFSData | None, raw_data: bytes | None = None) -> CID:
    data = unixfs.encode(msg) if msg is not None else raw_data
    block = dagpb.encode(links, data)
    cid = CID.for_block(block, Codec.DAG_PB)
    store.blocks[cid] = block
    return cid


def test_lying_blocksizes_are_refused():
    store = MemoryStore()
    leaf = CID.for_block(b"abc")
    store.blocks[leaf] = b"abc"
    root = _put(store, [dagpb.PBLink(leaf, "", 3)], UnixFSData(DataType.FILE, blocksizes=(4,)))
    with pytest.raises(InvalidUnixFS, match="parent says 4"):
        b"".join(export_file(store, root))


def test_non_unixfs_and_malformed_nodes_are_refused():
    store = MemoryStore()
    no_data = _put(store, [], None)
    with pytest.raises(InvalidUnixFS, match="no Data"):
        list(export_file(store, no_data))
    bad = CID.for_block(b"\x0a\x01x\x0a\x01y", Codec.DAG_PB)
    store.blocks[bad] = b"\x0a\x01x\x0a\x01y"
    with pytest.raises(InvalidDagPB):
        list(export_file(store, bad))


def test_directory_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_bytes(b"hello")
    (src / "sub" / "big").write_bytes(_data(5000))
    (src / "sub" / "deeper" / "é").write_bytes(b"")
    store = MemoryStore()
    result = import_path(src, store, chunk_size=1000, cid_version=1)
    assert result.size == 5005
    with pytest.raises(InvalidUnixFS, match="is a directory"):
        list(export_file(store, result.cid))
    out = tmp_path / "out"
    assert export_path(store, result.cid, out) == 5005
    for root, _dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        assert sorted(os.listdir(out / rel)) == sorted(os.listdir(root))
        for name in files:
            assert (out / rel / name).read_bytes() == (src / rel / name).read_bytes()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\0b", ""])
def test_export_refuses_names_that_escape(tmp_path, name):
    store = MemoryStore()
    leaf = CID.for_block(b"x")
    store.blocks[leaf] = b"x"
    root = _put(store, [dagpb.PBLink(leaf, name, 1)], UnixFSData(DataType.DIRECTORY))
    with pytest.raises(InvalidUnixFS):
        export_path(store, root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_symlinks(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to("/etc/passwd")
    with pytest.raises(InvalidUnixFS, match="symlink"):
        import_path(tmp_path / "d")


def test_a_fifo_is_refused_before_anything_reads_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidUnixFS, match="not a regular file or directory"):
        import_path(str(fifo), None)  # opening it for reading would block for good


def test_a_raw_block_file_has_its_length_as_content_size():
    """`p2pd cat` of a small file added with raw leaves (its root is one raw block) sized
    it 0 and then stopped with "cat stopped after 26 of 0 bytes"."""

    class One:
        def get(self, cid):
            return b"written after the restart\n"

    cid = CID.for_block(b"written after the restart\n", Codec.RAW)
    assert stat(One(), cid).content_size() == 26
