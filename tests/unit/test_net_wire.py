"""The transport framing under our muxer, sans-IO: Noise transport messages and Yamux frames."""

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pd.net.noise_wire import MAX_PLAINTEXT, NoiseCipherPair, NoiseWireError
from p2pd.net.yamux_wire import (
    FLAG_FIN,
    FLAG_SYN,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YamuxDecoder,
    YamuxWireError,
    header,
)

K1, K2 = bytes(range(32)), bytes(range(32, 64))


def pair():
    return NoiseCipherPair(K1, K2), NoiseCipherPair(K2, K1)


def test_a_message_is_the_spec_layout():
    # Noise spec: ENCRYPT(k, n, ad="", plaintext) with nonce = 4 zero bytes || n (LE 64);
    # libp2p noise spec: a 2-byte big-endian length before each message.
    a, _ = pair()
    a.seal(b"first")
    wire = a.seal(b"second")
    expect = ChaCha20Poly1305(K1).encrypt(b"\0\0\0\0" + struct.pack("<Q", 1), b"second", None)
    assert wire == len(expect).to_bytes(2, "big") + expect


def test_large_writes_become_full_size_messages_and_open_in_any_cut():
    a, b = pair()
    data = bytes(range(256)) * 1000  # 256,000 bytes: three full messages and a partial
    wire = a.seal(data)
    assert len(wire) == len(data) + 4 * (2 + 16)
    assert int.from_bytes(wire[:2], "big") == MAX_PLAINTEXT + 16
    for cut in (1, 2, 3, 7000, 65537, 1 << 20):
        a, b = pair()
        wire = a.seal(data)
        got = []
        for i in range(0, len(wire), cut):
            got += b.open(wire[i:i + cut])
        assert b"".join(got) == data and b.buffered == 0


@pytest.mark.parametrize("mutate", [
    lambda w: w[:5] + bytes([w[5] ^ 1]) + w[6:],   # a flipped ciphertext bit
    lambda w: w[:-1] + bytes([w[-1] ^ 0x80]),       # a flipped tag bit
    lambda w: b"\x00\x05" + w[2:7],                 # shorter than a tag
])
def test_a_forged_or_truncated_message_is_refused(mutate):
    a, b = pair()
    with pytest.raises(NoiseWireError):
        b.open(mutate(a.seal(b"hello world")))


def test_replayed_and_reordered_messages_are_refused():
    a, b = pair()
    m0, m1 = a.seal(b"zero"), a.seal(b"one")
    assert b.open(m0) == [b"zero"]
    with pytest.raises(NoiseWireError):
        b.open(m0)  # replay: nonce 1 expected
    a, b = pair()
    m0, m1 = a.seal(b"zero"), a.seal(b"one")
    with pytest.raises(NoiseWireError):
        b.open(m1)


def test_noise_state_from_a_handshake_continues_its_counters():
    a = NoiseCipherPair(K1, K2, send_nonce=2)
    b = NoiseCipherPair(K2, K1, recv_nonce=2)
    assert b.open(a.seal(b"x")) == [b"x"]
    with pytest.raises(NoiseWireError):
        NoiseCipherPair(K2, K1).open(NoiseCipherPair(K1, K2, send_nonce=2).seal(b"x"))


def test_yamux_frames_are_cut_from_any_split():
    frames = (header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)
              + header(TYPE_DATA, 0, 1, 5) + b"hello"
              + header(TYPE_DATA, FLAG_FIN, 1, 0)
              + header(TYPE_PING, FLAG_SYN, 0, 77)
              + header(TYPE_GO_AWAY, 0, 0, 2))
    expect = [(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, None), (TYPE_DATA, 0, 1, 5, b"hello"),
              (TYPE_DATA, FLAG_FIN, 1, 0, b""), (TYPE_PING, FLAG_SYN, 0, 77, None),
              (TYPE_GO_AWAY, 0, 0, 2, None)]
    for cut in range(1, len(frames) + 1):
        d = YamuxDecoder(1 << 20)
        got = []
        for i in range(0, len(frames), cut):
            got += d.feed(frames[i:i + cut])
        assert got == expect and d.buffered == 0


@pytest.mark.parametrize("frame, message", [
    (b"\x01" + header(TYPE_DATA, 0, 1, 0)[1:], "version"),
    (header(TYPE_DATA, 0, 1, 0)[:1] + b"\x04" + header(TYPE_DATA, 0, 1, 0)[2:], "type"),
    (header(TYPE_DATA, 0, 1, (1 << 20) + 1), "exceeds"),
])
def test_bad_yamux_headers_are_refused(frame, message):
    with pytest.raises(YamuxWireError, match=message):
        YamuxDecoder(1 << 20).feed(frame)


def test_an_oversized_data_frame_is_refused_before_its_payload_arrives():
    d = YamuxDecoder(1000)
    with pytest.raises(YamuxWireError):
        d.feed(header(TYPE_DATA, 0, 1, 1001))


def test_mplex_frames_are_cut_from_any_split():
    from p2pd.net.mplex_wire import MplexDecoder, frame

    wire = frame(0, 0, b"0") + frame(300, 2, b"x" * 200) + frame(7, 4) + frame(2**40, 5)
    expect = [(0, 0, b"0"), (300, 2, b"x" * 200), (7, 4, b""), (2**40, 5, b"")]
    assert wire[:1] == b"\x00" and frame(300, 2, b"")[:2] == bytes([0xE2, 0x12])  # 300<<3|2
    for cut in range(1, len(wire) + 1):
        d = MplexDecoder()
        got = []
        for i in range(0, len(wire), cut):
            got += d.feed(wire[i:i + cut])
        assert got == expect and d.buffered == 0


@pytest.mark.parametrize("wire, message", [
    (b"\x07\x00", "flag 7"),
    (b"\x02\x81\x80\x80\x01", "limit"),
    (b"\xff" * 9 + b"\x01", "varint"),
    (b"\x82\x00\x00", "minimally"),
])
def test_bad_mplex_frames_are_refused(wire, message):
    from p2pd.net.mplex_wire import MplexDecoder, MplexWireError

    with pytest.raises(MplexWireError, match=message):
        MplexDecoder().feed(wire)
