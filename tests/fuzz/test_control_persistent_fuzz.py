"""The persistent-connection decoders on arbitrary input: their own error or events,
nothing else, the same events however the bytes are cut, and memory bounded by the
limit whatever lengths are announced."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.control.codec import (
    ControlProtocolError,
    decode_remove_stream_handler,
    decode_request,
    encode_frame,
)
from p2pd.control.persistent import (
    Frame,
    Oversized,
    PersistentFrameDecoder,
    PersistentProtocolError,
    decode_persistent_request,
    decode_remote_answer,
    decode_remote_call,
)
from p2pd.proto import daemon_pb2 as pb

LIMIT = 300


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i : i + size])
        i += size
    out.append(data[i:])
    return [piece for piece in out if piece]  # b"" means end of stream to the decoder


def run(pieces: list[bytes], eof: bool) -> tuple[list, str | None]:
    decoder = PersistentFrameDecoder(LIMIT)
    got: list = []
    try:
        for piece in pieces:
            decoder.receive_data(piece)
            while (event := decoder.next_event()) is not None:
                got.append(event)
            assert decoder.buffered <= LIMIT + 9 + 19
        if eof:
            decoder.receive_data(b"")
            while (event := decoder.next_event()) is not None:
                got.append(event)
    except PersistentProtocolError as exc:
        return got, str(exc)
    return got, None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 400), max_size=8), st.booleans())
def test_garbage_gives_events_or_the_decoders_own_error_however_cut(data, sizes, eof):
    whole = run([data], eof)
    assert run(cuts(data, sizes), eof) == whole


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.binary(max_size=700)),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(1, 500), max_size=8),
)
def test_frames_within_and_over_the_limit_come_out_in_order(calls, sizes):
    payloads = [
        pb.PersistentConnectionRequest(
            callId=cid, callUnary=pb.CallUnaryRequest(peer=b"p", proto="/x", data=data)
        ).SerializeToString()
        for cid, data in calls
    ]
    wire = b"".join(encode_frame(p) for p in payloads)
    want = [
        Frame(p) if len(p) <= LIMIT else Oversized(len(p), cid)
        for p, (cid, _) in zip(payloads, calls, strict=True)
    ]
    assert run(cuts(wire, sizes), True) == (want, None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_request_decoders_raise_only_their_own_error(data):
    for decode in (decode_persistent_request, decode_remote_call, decode_remote_answer):
        try:
            decode(data)
        except PersistentProtocolError:
            pass
    try:
        decode_remove_stream_handler(data)
    except ControlProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.text(max_size=40), max_size=4))
def test_every_forks_remove_stream_handler_frame_parses_as_a_type_10_request(addr, protos):
    frame = pb.RemoveStreamHandlerFrame(
        type=pb.Request.REMOVE_STREAM_HANDLER,
        removeStreamHandler=pb.RemoveStreamHandlerRequest(addr=addr, proto=protos),
    ).SerializeToString()
    assert decode_request(frame).type == pb.Request.REMOVE_STREAM_HANDLER
    removal = decode_remove_stream_handler(frame)
    assert (removal.addr, list(removal.proto)) == (addr, protos)
