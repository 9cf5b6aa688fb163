"""dag-pb codec: canonical bytes out, strict refusal of everything non-canonical in."""

import pytest

from p2pd.blocks import dagpb
from p2pd.blocks.cid import CID
from p2pd.blocks.dagpb import PBLink, PBNode, decode_node, encode_node
from p2pd.blocks.multicodec import Codec
from p2pd.errors import InvalidDagPB
from p2pd.proto import merkledag_pb2

CID_A = CID.for_block(b"a", Codec.DAG_PB, version=0)
CID_B = CID.for_block(b"b", Codec.RAW, version=1)


def test_empty_node_is_empty_bytes():
    assert encode_node(PBNode()) == b""
    assert decode_node(b"") == PBNode((), None)


def test_empty_directory_has_the_well_known_cid():
    block = encode_node(PBNode((), b"\x08\x01"))
    assert block == b"\x0a\x02\x08\x01"
    assert str(CID.for_block(block, Codec.DAG_PB, version=0)) == (
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    )


def test_links_are_written_before_data():
    node = PBNode((PBLink(CID_A, "x", 5),), b"data")
    block = encode_node(node)
    assert block[0] == 0x12  # Links (field 2) first
    assert block.endswith(b"\x0a\x04data")
    assert decode_node(block) == node


def test_empty_name_differs_from_no_name_and_both_round_trip():
    with_name = encode_node(PBNode((PBLink(CID_A, "", 1),)))
    without = encode_node(PBNode((PBLink(CID_A, None, 1),)))
    assert with_name != without
    assert decode_node(with_name).links[0].name == ""
    assert decode_node(without).links[0].name is None


def test_encoding_agrees_with_the_generated_schema_module():
    node = PBNode((PBLink(CID_A, "één", 300), PBLink(CID_B, None, None)), b"\x00\xff")
    msg = merkledag_pb2.PBNode.FromString(encode_node(node))
    assert msg.Data == b"\x00\xff"
    assert [link.Hash for link in msg.Links] == [bytes(CID_A), bytes(CID_B)]
    assert msg.Links[0].Name == "één" and msg.Links[0].Tsize == 300
    assert not msg.Links[1].HasField("Name") and not msg.Links[1].HasField("Tsize")


def test_sort_links_orders_by_utf8_bytes():
    names = ["b", "a", "B", "é", "aa", ""]
    links = [PBLink(CID_A, n, 1) for n in names]
    assert [lnk.name for lnk in dagpb.sort_links(links)] == sorted(names, key=str.encode)


def _link(body: bytes) -> bytes:
    return b"\x12" + bytes([len(body)]) + body


HASH_A = b"\x0a\x22" + bytes(CID_A)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"\x0a\x01x" + _link(HASH_A), "after Data"),
        (b"\x0a\x01x\x0a\x01y", "after Data"),
        (b"\x08\x01", "wire type 0"),
        (b"\x1a\x00", "unknown field 3"),
        (b"\x0a\x05ab", "claims 5 bytes"),
        (b"\x0a", "truncated varint"),
        (b"\x0a\x80\x00", "not minimally encoded"),
        (_link(b"\x12\x01x" + HASH_A), "out-of-order Hash"),
        (_link(HASH_A + HASH_A), "duplicate Hash"),
        (_link(HASH_A + b"\x18\x01\x12\x01x"), "out-of-order Name"),
        (_link(b"\x12\x01x"), "no Hash"),
        (_link(b"\x0a\x03abc"), "not a valid CID"),
        (_link(HASH_A + b"\x12\x02\xc3\x28"), "not valid UTF-8"),
        (_link(HASH_A + b"\x1a\x00"), "Tsize has wire type 2"),
        (_link(HASH_A + b"\x10\x01"), "Name has wire type 0"),
        (_link(HASH_A + b"\x20\x01"), "unknown field 4"),
        (_link(HASH_A + b"\x18" + b"\xff" * 7 + b"\x7f"), r"exceeds 2\*\*53-1"),
        (_link(HASH_A + b"\x18" + b"\xff" * 9 + b"\x02"), "overflows 64 bits"),
    ],
)
def test_non_canonical_or_malformed_blocks_are_refused(block, message):
    with pytest.raises(InvalidDagPB, match=message):
        decode_node(block)


def test_oversized_block_is_refused_before_parsing():
    with pytest.raises(InvalidDagPB, match="exceeds"):
        decode_node(b"\x0a" + b"\x00" * dagpb.MAX_BLOCK_SIZE)


def test_too_many_links_are_refused(monkeypatch):
    monkeypatch.setattr(dagpb, "MAX_LINKS", 3)
    ok = encode_node(PBNode(tuple(PBLink(CID_A) for _ in range(3))))
    assert len(decode_node(ok).links) == 3
    with pytest.raises(InvalidDagPB, match="more than 3 links"):
        decode_node(ok + _link(HASH_A))


def test_tsize_outside_javascript_range_is_not_encoded():
    with pytest.raises(InvalidDagPB):
        encode_node(PBNode((PBLink(CID_A, None, 1 << 53),)))
