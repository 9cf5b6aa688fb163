"""The control-protocol codec splits frames exactly, bounds lengths and refuses garbage."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.control.codec import (
    ControlProtocolError,
    FrameDecoder,
    decode_request,
    encode_frame,
    encode_message,
    error_response,
)
from p2pd.proto import daemon_pb2 as pb


def _frames(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


def test_frames_split_across_arbitrary_chunks_come_out_whole():
    payloads = [b"", b"a", b"x" * 300, b"y" * 70000]
    wire = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    got = []
    for i in range(0, len(wire), 7):
        decoder.receive_data(wire[i : i + 7])
        got += _frames(decoder)
    assert got == payloads


def test_bytes_after_the_last_frame_are_kept_for_the_piped_stream():
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(b"req") + b"stream data")
    assert decoder.next_frame() == b"req"
    assert decoder.take_unconsumed() == b"stream data"
    assert decoder.buffered == 0


def test_oversized_length_is_refused_before_the_body_arrives():
    decoder = FrameDecoder(max_frame=1024)
    decoder.receive_data(encode_frame(b"x" * 1025)[:3])
    with pytest.raises(ControlProtocolError, match="exceeds the limit"):
        decoder.next_frame()


def test_ten_byte_length_prefix_is_refused():
    decoder = FrameDecoder()
    decoder.receive_data(b"\xff" * 10)
    with pytest.raises(ControlProtocolError, match="longer than 9 bytes"):
        decoder.next_frame()


def test_truncated_frame_at_end_of_stream_is_an_error():
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(b"hello")[:4])
    assert decoder.next_frame() is None
    decoder.receive_data(b"")
    with pytest.raises(ControlProtocolError, match="stream ended"):
        decoder.next_frame()


def test_clean_end_of_stream_between_frames_is_not_an_error():
    decoder = FrameDecoder()
    decoder.receive_data(encode_frame(b"a"))
    decoder.receive_data(b"")
    assert decoder.next_frame() == b"a"
    assert decoder.next_frame() is None


def test_request_round_trips_through_the_codec():
    request = pb.Request(
        type=pb.Request.CONNECT, connect=pb.ConnectRequest(peer=b"\x00\x01", addrs=[b"\x04"])
    )
    decoder = FrameDecoder()
    decoder.receive_data(encode_message(request))
    assert decode_request(decoder.next_frame()) == request


def test_request_without_type_is_refused():
    with pytest.raises(ControlProtocolError, match="no type"):
        decode_request(b"")


def test_unknown_request_type_is_refused():
    # field 1 (varint) = 77: proto2 keeps unknown enum values out of the field.
    with pytest.raises(ControlProtocolError):
        decode_request(b"\x08\x4d")


def test_garbage_is_refused_with_a_protocol_error():
    with pytest.raises(ControlProtocolError):
        decode_request(b"\xff\xff\xff\xff")


def test_error_response_carries_the_message():
    response = error_response("no such peer")
    assert response.type == pb.Response.ERROR
    assert response.error.msg == "no such peer"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=1, max_value=64))
def test_decoder_never_fails_other_than_with_a_protocol_error(data, chunk):
    decoder = FrameDecoder(max_frame=128)
    try:
        for i in range(0, len(data), chunk):
            decoder.receive_data(data[i : i + chunk])
            for frame in _frames(decoder):
                assert len(frame) <= 128
                try:
                    decode_request(frame)
                except ControlProtocolError:
                    pass
        decoder.receive_data(b"")
        _frames(decoder)
    except ControlProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(min_value=1, max_value=50))
def test_any_sequence_of_frames_decodes_to_itself(payloads, chunk):
    wire = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=300)
    got = []
    for i in range(0, len(wire), chunk):
        decoder.receive_data(wire[i : i + chunk])
        got += _frames(decoder)
    assert got == payloads
