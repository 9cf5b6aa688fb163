"""The hivemind fork's persistent-connection wire parts, sans IO: frames and oversized
frames, call ids, request checks, round-robin turns, type 9/10 telling apart, the
/proc/net tables read for live handlers, and our proto against the fork's."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from p2pd.control.codec import (
    ControlProtocolError,
    decode_remove_stream_handler,
    decode_request,
    encode_frame,
    is_persistent_upgrade,
)
from p2pd.control.endpoint import _tcp_listening, _unix_listening
from p2pd.control.persistent import (
    NIL_CALL_ID,
    Frame,
    Oversized,
    PersistentFrameDecoder,
    PersistentProtocolError,
    RoundRobin,
    call_id_of,
    decode_persistent_request,
    decode_remote_answer,
    decode_remote_call,
)
from p2pd.proto import daemon_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def events(decoder: PersistentFrameDecoder) -> list:
    out = []
    while (event := decoder.next_event()) is not None:
        out.append(event)
    return out


def call(call_id: bytes, data: bytes) -> bytes:
    return pb.PersistentConnectionRequest(
        callId=call_id, callUnary=pb.CallUnaryRequest(peer=b"p", proto="/x", data=data)
    ).SerializeToString()


def test_an_oversized_frame_is_skipped_and_named_by_its_call_id_and_framing_goes_on():
    big_id, small_id = uuid.uuid4().bytes, uuid.uuid4().bytes
    big, small = call(big_id, b"x" * 5000), call(small_id, b"ok")
    wire = encode_frame(big) + encode_frame(small)
    for step in (1, 3, 17, 4096, len(wire)):
        decoder = PersistentFrameDecoder(1000)
        got = []
        for i in range(0, len(wire), step):
            decoder.receive_data(wire[i : i + step])
            got += events(decoder)
        assert got == [Oversized(len(big), big_id), Frame(small)], step


def test_an_oversized_frame_is_never_buffered():
    decoder = PersistentFrameDecoder(1000)
    header = b"\x80\x80\x80\x80\x04"  # 2**30 bytes announced
    decoder.receive_data(header + b"\x0a\x10" + b"i" * 16)
    for _ in range(100):
        decoder.receive_data(b"z" * 65536)
        assert decoder.next_event() is None
    assert decoder.buffered <= 19  # the call id's field, nothing of the body
    decoder.receive_data(b"z" * ((1 << 30) - 18 - 100 * 65536))  # the rest of it
    assert decoder.next_event() == Oversized(1 << 30, b"i" * 16)


def test_an_oversized_frame_without_a_leading_call_id_has_none():
    decoder = PersistentFrameDecoder(10)
    decoder.receive_data(encode_frame(b"\x12\x30" + b"q" * 48))
    assert events(decoder) == [Oversized(50, None)]


def test_the_stream_ending_inside_a_frame_or_a_skipped_frame_is_an_error():
    for wire, limit in ((encode_frame(b"abcdef")[:4], 100), (encode_frame(b"a" * 50)[:20], 10)):
        decoder = PersistentFrameDecoder(limit)
        decoder.receive_data(wire)
        assert events(decoder) == []
        decoder.receive_data(b"")
        with pytest.raises(PersistentProtocolError, match="stream ended"):
            decoder.next_event()


def test_a_bad_length_prefix_is_an_error():
    decoder = PersistentFrameDecoder()
    decoder.receive_data(b"\xff" * 10)
    with pytest.raises(PersistentProtocolError, match="length prefix"):
        decoder.next_event()


def test_call_id_of_reads_only_a_leading_16_byte_field_1():
    cid = uuid.uuid4().bytes
    assert call_id_of(b"\x0a\x10" + cid + b"more") == cid
    assert call_id_of(b"\x0a\x0f" + cid[:15]) is None
    assert call_id_of(b"\x0a\x10" + cid[:10]) is None
    assert call_id_of(b"\x12\x10" + cid) is None
    assert call_id_of(b"") is None


def test_requests_are_checked_and_errors_name_the_call_when_they_can():
    cid = uuid.uuid4().bytes
    ok = decode_persistent_request(call(cid, b"d"))
    assert ok.callId == cid and ok.callUnary.data == b"d"
    cases = {
        b"\xff\xff": (NIL_CALL_ID, "not a valid PersistentConnectionRequest"),
        pb.PersistentConnectionRequest(callId=b"x" * 3, cancel=pb.Cancel()).SerializeToString(): (
            NIL_CALL_ID,
            "callId must be 16 bytes",
        ),
        pb.PersistentConnectionRequest(callId=cid).SerializeToString(): (cid, "names no message"),
        pb.PersistentConnectionRequest(
            callId=cid, callUnary=pb.CallUnaryRequest(peer=b"p")
        ).SerializeToString(): (cid, "names no protocol"),
        pb.PersistentConnectionRequest(
            callId=cid, callUnary=pb.CallUnaryRequest(proto="/x")
        ).SerializeToString(): (cid, "names no peer"),
        pb.PersistentConnectionRequest(
            callId=cid, addUnaryHandler=pb.AddUnaryHandlerRequest()
        ).SerializeToString(): (cid, "addUnaryHandler names no protocol"),
    }
    for frame, (want_id, text) in cases.items():
        with pytest.raises(PersistentProtocolError, match=text) as info:
            decode_persistent_request(frame)
        assert info.value.call_id == want_id


def test_frames_between_daemons_must_be_a_call_and_an_answer():
    cid = uuid.uuid4().bytes
    assert decode_remote_call(call(cid, b"z")).callUnary.data == b"z"
    with pytest.raises(PersistentProtocolError):
        decode_remote_call(pb.PersistentConnectionRequest(callId=cid).SerializeToString())
    answer = pb.PersistentConnectionRequest(
        callId=cid, unaryResponse=pb.CallUnaryResponse(response=b"r")
    )
    assert decode_remote_answer(answer.SerializeToString()).response == b"r"
    with pytest.raises(PersistentProtocolError, match="without a unaryResponse"):
        decode_remote_answer(call(cid, b""))


def test_round_robin_turns_and_removal_keep_the_order_of_the_rest():
    rr = RoundRobin("a")
    rr.append("b")
    rr.append("c")
    assert [rr.take()[0] for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.take() == ["b", "c", "a"]  # every item, the current turn first
    assert rr.remove("b") and not rr.remove("b")
    assert rr.take()[0] == "c"
    assert rr.take()[0] == "a"
    assert rr.remove("a") and rr.remove("c")
    assert len(rr) == 0 and rr.take() == []


def test_type_9_is_an_upgrade_without_payload_and_peerstore_with_one():
    upgrade = decode_request(pb.Request(type=9).SerializeToString())
    assert is_persistent_upgrade(upgrade)
    peerstore = pb.Request(type=pb.Request.PEERSTORE, peerStore=pb.PeerstoreRequest(type=1))
    assert not is_persistent_upgrade(decode_request(peerstore.SerializeToString()))
    assert not is_persistent_upgrade(decode_request(pb.Request(type=0).SerializeToString()))


def test_a_type_10_frame_is_reparsed_as_the_forks_remove_stream_handler():
    frame = pb.RemoveStreamHandlerFrame(
        type=pb.Request.REMOVE_STREAM_HANDLER,
        removeStreamHandler=pb.RemoveStreamHandlerRequest(addr=b"\x01\x02", proto=["/a", "/b"]),
    ).SerializeToString()
    assert decode_request(frame).type == pb.Request.REMOVE_STREAM_HANDLER
    removal = decode_remove_stream_handler(frame)
    assert removal.addr == b"\x01\x02" and list(removal.proto) == ["/a", "/b"]
    with pytest.raises(ControlProtocolError, match="without a RemoveStreamHandlerRequest"):
        decode_remove_stream_handler(pb.Request(type=10).SerializeToString())


UNIX_TABLE = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 2001 /tmp/live.sock
0000000000000000: 00000002 00000000 00000000 0001 01 2002 /tmp/bound-only.sock
0000000000000000: 00000003 00000000 00000000 0001 03 2003 /tmp/live.sock
0000000000000000: 00000002 00000000 00010000 0001 01 2004 /tmp/with space.sock
"""

TCP_TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0
   2: 0100007F:0051 0100007F:9999 01 00000000:00000000 00:00000000 00000000  0
"""


def test_listening_sockets_are_read_from_the_proc_net_tables():
    assert _unix_listening(UNIX_TABLE, "/tmp/live.sock")
    assert _unix_listening(UNIX_TABLE, "/tmp/with space.sock")
    assert not _unix_listening(UNIX_TABLE, "/tmp/bound-only.sock")
    assert not _unix_listening(UNIX_TABLE, "/tmp/absent.sock")
    lo = ipaddress.ip_address("127.0.0.1")
    assert _tcp_listening(TCP_TABLE, lo, 8080)
    assert _tcp_listening(TCP_TABLE, lo, 80)  # 0.0.0.0 covers it
    assert not _tcp_listening(TCP_TABLE, lo, 81)  # connected, not listening
    assert not _tcp_listening(TCP_TABLE, ipaddress.ip_address("127.0.0.2"), 8080)


# -- our daemon.proto against the fork's p2pd.proto --------------------------------------


def _fork_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from harness.godaemon import GoDaemonUnavailable, go_daemon_proto
    finally:
        sys.path.pop(0)
    try:
        proto = go_daemon_proto()
    except GoDaemonUnavailable as exc:  # no network and no cache: nothing to compare with
        pytest.skip(str(exc))
    out = tmp_path / "fork.desc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"--descriptor_set_out={out}",
            proto.name,
        ],
        check=True,
    )
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[0]


def test_every_message_and_enum_of_the_fork_has_the_same_numbers_and_types_here(tmp_path):
    fork = _fork_descriptor(tmp_path)
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    our_messages = {m.name: m for m in ours.message_type}
    checked = 0
    for message in fork.message_type:
        if message.name == "RPCError":  # hivemind's own, inside its stream payloads
            continue
        mine = our_messages[message.name]
        fields = {f.number: f for f in mine.field}
        for field in message.field:
            if message.name == "Request" and field.number == 9:
                # removeStreamHandler: read through RemoveStreamHandlerFrame (type 10)
                field_9 = {f.number: f for f in our_messages["RemoveStreamHandlerFrame"].field}[9]
                assert field_9.name == field.name
                assert field_9.type_name.split(".")[-1] == field.type_name.split(".")[-1]
                continue
            got = fields[field.number]
            assert (got.name, got.type) == (field.name, field.type), (message.name, field.name)
            assert got.type_name.split(".")[-1] == field.type_name.split(".")[-1]
            repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            assert (got.label == repeated) == (field.label == repeated)
            assert got.HasField("oneof_index") == field.HasField("oneof_index")
            checked += 1
        our_enums = {e.name: e for e in mine.enum_type}
        for enum in message.enum_type:
            values = {(v.name, v.number) for v in our_enums[enum.name].value}
            assert {(v.name, v.number) for v in enum.value} <= values, enum.name
    assert checked > 60
