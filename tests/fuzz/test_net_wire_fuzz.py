"""Noise transport and Yamux decoders on arbitrary input: their own error or frames, nothing
else, and the same result however the bytes are cut."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net.noise_wire import NoiseCipherPair, NoiseWireError
from p2pd.net.yamux_wire import YamuxDecoder, YamuxWireError, header

K1, K2 = bytes(32), bytes(range(32))


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i:i + size])
        i += size
    out.append(data[i:])
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=8))
def test_noise_garbage_is_refused_cleanly(data, sizes):
    b = NoiseCipherPair(K2, K1)
    try:
        for piece in cuts(data, sizes):
            assert b.open(piece) == []  # no forgery opens
    except NoiseWireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=70000), min_size=1, max_size=4),
       st.lists(st.integers(1, 100000), max_size=6))
def test_noise_round_trip_in_any_cut(messages, sizes):
    a, b = NoiseCipherPair(K1, K2), NoiseCipherPair(K2, K1)
    wire = b"".join(a.seal(m) for m in messages)
    got = b"".join(p for piece in cuts(wire, sizes) for p in b.open(piece))
    assert got == b"".join(messages)


def _decode(data: bytes, sizes: list[int]):
    d = YamuxDecoder(4096)
    frames = []
    try:
        for piece in cuts(data, sizes):
            frames += d.feed(piece)
    except YamuxWireError as exc:
        return frames, str(exc)
    return frames, None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 100), max_size=8))
def test_yamux_garbage_gives_frames_or_a_wire_error_whatever_the_cut(data, sizes):
    # Byte by byte gives every frame before an error (a feed that fails loses its own).
    all_frames, any_error = _decode(data, [1] * len(data))
    frames, error = _decode(data, sizes)
    assert frames == all_frames[:len(frames)]
    assert (error is None) == (any_error is None)
    for typ, _flags, _sid, value, payload in frames:
        assert typ <= 3 and (payload is None) == (typ != 0)
        if typ == 0:
            assert len(payload) == value <= 4096


frames = st.tuples(st.integers(0, 3), st.integers(0, 15), st.integers(0, 2**32 - 1),
                   st.integers(0, 2**32 - 1), st.binary(max_size=300))


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=10), st.lists(st.integers(1, 50), max_size=8))
def test_yamux_valid_frames_round_trip(spec, sizes):
    wire, expect = b"", []
    for typ, flags, sid, value, payload in spec:
        if typ == 0:
            wire += header(typ, flags, sid, len(payload)) + payload
            expect.append((typ, flags, sid, len(payload), payload))
        else:
            wire += header(typ, flags, sid, value)
            expect.append((typ, flags, sid, value, None))
    assert _decode(wire, sizes) == (expect, None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 100), max_size=8))
def test_mplex_garbage_gives_frames_or_a_wire_error_whatever_the_cut(data, sizes):
    from p2pd.net.mplex_wire import MplexDecoder, MplexWireError

    def decode(sizes):
        d, out = MplexDecoder(4096), []
        try:
            for piece in cuts(data, sizes):
                out += d.feed(piece)
        except MplexWireError:
            return out, True
        return out, False

    every, any_error = decode([1] * len(data))  # every frame before an error
    part, error = decode(sizes)
    assert part == every[:len(part)] and error == any_error
    assert all(flag != 7 and len(body) <= 4096 for _sid, flag, body in part)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**60 - 1), st.integers(0, 6), st.binary(max_size=300)),
                max_size=10), st.lists(st.integers(1, 50), max_size=8))
def test_mplex_valid_frames_round_trip(spec, sizes):
    from p2pd.net.mplex_wire import MplexDecoder, frame

    wire = b"".join(frame(*f) for f in spec)
    d = MplexDecoder()
    got = [f for piece in cuts(wire, sizes) for f in d.feed(piece)]
    assert got == spec
