"""Hypothesis: IPFS path text and directory blocks from anyone resolve or fail with
PathError, never anything else; a real directory resolves every one of its names."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.blocks import dagpb, unixfs
from p2pd.blocks.cid import CID
from p2pd.blocks.multicodec import Codec
from p2pd.blocks.paths import PathError, parse_path, step

ROOT = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
names = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
                min_size=1, max_size=12).filter(
    lambda n: n.strip() == n and n not in (".", ".."))


@settings(max_examples=400)
@given(st.text(max_size=120))
def test_any_text_parses_or_is_a_path_error(text):
    try:
        path = parse_path(text)
    except PathError:
        return
    assert all(s and "/" not in s for s in path.segments)


@settings(max_examples=200)
@given(st.lists(names, max_size=8))
def test_a_path_keeps_its_segments(segments):
    for prefix in ("", "/ipfs/"):
        path = parse_path(prefix + "/".join([ROOT, *segments]))
        assert str(path.root) == ROOT and list(path.segments) == segments


@settings(max_examples=400)
@given(st.binary(max_size=300), st.booleans(), names)
def test_any_block_steps_or_is_a_path_error(block, dag_pb, name):
    cid = CID.for_block(block, Codec.DAG_PB if dag_pb else Codec.RAW, 1)
    try:
        step(cid, block, name)
    except PathError:
        pass
    # a block that is not what its CID names is never used
    try:
        step(cid, block + b"x", name)
        raise AssertionError("a block that does not match its CID was used")
    except PathError as exc:
        assert "does not match its CID" in str(exc)


@settings(max_examples=100)
@given(st.lists(names, min_size=1, max_size=8, unique=True))
def test_every_name_of_a_directory_resolves_to_its_link(entries):
    children = {n: CID.for_block(n.encode(), Codec.RAW, 1) for n in entries}
    links = dagpb.sort_links([dagpb.PBLink(c, n, 1) for n, c in children.items()])
    block = dagpb.encode(links, unixfs.encode(unixfs.UnixFSData(unixfs.DataType.DIRECTORY)))
    cid = CID.for_block(block, Codec.DAG_PB, 1)
    for n, child in children.items():
        assert step(cid, block, n) == child
