"""Hypothesis: the dag-pb and UnixFS decoders take any bytes without surprises."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.blocks import dagpb, unixfs
from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec
from p2pd.errors import InvalidDagPB, InvalidUnixFS

cids = st.builds(
    lambda data, raw, v0: (
        CID.for_block(data, Codec.DAG_PB, 0)
        if v0
        else CID.for_block(data, Codec.RAW if raw else Codec.DAG_PB, 1)
    ),
    st.binary(max_size=8),
    st.booleans(),
    st.booleans(),
)
links = st.builds(
    dagpb.PBLink,
    cids,
    st.none() | st.text(max_size=20),
    st.none() | st.integers(0, dagpb.MAX_TSIZE),
)
nodes = st.builds(
    dagpb.PBNode, st.lists(links, max_size=8).map(tuple), st.none() | st.binary(max_size=64)
)
sizes = st.integers(0, 2**40)  # six of them still fit in 2**53
messages = st.builds(
    unixfs.UnixFSData,
    st.sampled_from(unixfs.DataType),
    st.binary(max_size=32),
    st.none(),
    st.lists(sizes, max_size=6).map(tuple),
    st.none() | st.integers(0, 2**64 - 1),
    st.none() | st.integers(0, 2**64 - 1),
    st.none() | st.integers(0, 2**32 - 1),
    st.none()
    | st.builds(
        unixfs.UnixTime, st.integers(-(2**63), 2**63 - 1), st.none() | st.integers(1, 999_999_999)
    ),
)


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_dagpb_decoder_accepts_or_raises_invalid_dagpb(data):
    try:
        node = dagpb.decode_node(data)
    except InvalidDagPB:
        return
    assert dagpb.encode_node(node) == data  # whatever decodes is canonical


@settings(max_examples=500)
@given(nodes)
def test_dagpb_round_trip(node):
    assert dagpb.decode_node(dagpb.encode_node(node)) == node


@settings(max_examples=500)
@given(nodes, st.integers(0, 200), st.binary(min_size=1, max_size=4))
def test_dagpb_corrupted_bytes_never_crash(node, where, junk):
    block = bytearray(dagpb.encode_node(node))
    pos = where % (len(block) + 1)
    block[pos : pos + len(junk)] = junk
    try:
        dagpb.decode_node(bytes(block))
    except InvalidDagPB:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=256))
def test_unixfs_decoder_accepts_or_raises_invalid_unixfs(data):
    try:
        unixfs.decode(data)
    except InvalidUnixFS:
        pass


def _normal(msg: unixfs.UnixFSData) -> unixfs.UnixFSData:
    """What a round trip gives: default modes vanish, files always carry filesize."""
    default = (
        0o755 if msg.type in (unixfs.DataType.DIRECTORY, unixfs.DataType.HAMT_SHARD) else 0o644
    )
    mode = None if msg.mode == default else msg.mode
    filesize = msg.content_size() if msg.is_file and msg.filesize is None else msg.filesize
    return unixfs.UnixFSData(
        msg.type, msg.data, filesize, msg.blocksizes, msg.hash_type, msg.fanout, mode, msg.mtime
    )


@settings(max_examples=500)
@given(messages)
def test_unixfs_round_trip(msg):
    assert unixfs.decode(unixfs.encode(msg)) == _normal(msg)


@settings(max_examples=300)
@given(nodes)
def test_unixfs_node_check_accepts_or_raises_invalid_unixfs(node):
    try:
        unixfs.decode_node(node)
    except InvalidUnixFS:
        pass
