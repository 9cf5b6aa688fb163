"""QUIC packet protection in the native core (p2pd.native_quic) against aioquic's own
(aioquic._crypto, on pyca/cryptography): the same bytes out for every cipher suite QUIC
uses, each opens what the other sealed, tampering is refused by both; and connections with
native protection talk to connections without it (through key updates), so the package
works either way."""

from __future__ import annotations

import os

import pytest
from aioquic._crypto import AEAD, CryptoError, HeaderProtection
from aioquic.tls import Epoch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_quic_core import Pair

from p2pd import native_quic
from p2pd.net.quic_core import QuicSettings

needs_native = pytest.mark.skipif(not native_quic.AVAILABLE,
                                  reason="native QUIC protection is not built here")
SUITES = [(b"aes-128-gcm", b"aes-128-ecb", 16), (b"aes-256-gcm", b"aes-256-ecb", 32),
          (b"chacha20-poly1305", b"chacha20", 32)]
IDS = [s[0].decode() for s in SUITES]


def pairs(suite):
    aead_name, hp_name, key_len = suite
    key, iv, hp = os.urandom(key_len), os.urandom(12), os.urandom(key_len)
    theirs = AEAD(aead_name, key, iv), HeaderProtection(hp_name, hp)
    ours = (native_quic.Aead(aead_name, key, iv, error=CryptoError),
            native_quic.HeaderProtection(hp_name, hp, error=CryptoError))
    return theirs, ours


@needs_native
@pytest.mark.parametrize("suite", SUITES, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=4, max_size=3000), pn=st.integers(0, 2**62 - 1),
       pn_len=st.integers(1, 4), long_header=st.booleans(), head=st.binary(max_size=40))
def test_native_protection_makes_aioquics_bytes_and_opens_them(suite, payload, pn, pn_len,
                                                               long_header, head):
    (aead, hp), (n_aead, n_hp) = pairs(suite)
    first = (0xC0 if long_header else 0x40) | (pn_len - 1)
    header = bytes([first]) + head + (pn & (2 ** (8 * pn_len) - 1)).to_bytes(pn_len, "big")
    sealed = aead.encrypt(payload, header, pn)
    assert n_aead.encrypt(payload, header, pn) == sealed
    assert n_aead.decrypt(sealed, header, pn) == payload
    assert aead.decrypt(n_aead.encrypt(payload, header, pn), header, pn) == payload
    packet = hp.apply(header, sealed)
    assert n_hp.apply(header, sealed) == packet
    pn_offset = len(header) - pn_len
    assert n_hp.remove(packet, pn_offset) == hp.remove(packet, pn_offset)
    tampered = bytearray(sealed)
    tampered[len(tampered) // 2] ^= 1
    for opener in (aead, n_aead):
        with pytest.raises(CryptoError):
            opener.decrypt(bytes(tampered), header, pn)
        with pytest.raises(CryptoError):
            opener.decrypt(sealed, header, pn ^ 1)  # another nonce


@needs_native
@pytest.mark.parametrize("suite", SUITES, ids=IDS)
def test_short_input_is_a_crypto_error_not_a_crash(suite):
    _, (n_aead, n_hp) = pairs(suite)
    with pytest.raises(CryptoError):
        n_aead.decrypt(b"\x00" * 15, b"h", 1)  # shorter than the tag
    with pytest.raises(CryptoError):
        n_hp.remove(b"\x40" + bytes(10), 1)  # too short to sample
    with pytest.raises(CryptoError):
        n_hp.apply(b"\x40\x01", bytes(10))
    with pytest.raises(ValueError):
        native_quic.Aead(suite[0], bytes(7), bytes(12))


def stream_through(pair: Pair, size: int) -> int:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(sid, os.urandom(size), end_stream=True)
    got = 0
    for _ in range(400):
        pair.pump(5)
        for e in pair.events(pair.server):
            if getattr(e, "stream_id", None) == sid and hasattr(e, "data"):
                got += len(e.data)
                pair.server.consumed(sid, len(e.data))
        if got == size:
            break
    return got


@pytest.mark.parametrize("client_native, server_native",
                         [(True, False), (False, True), (True, True), (False, False)])
def test_native_and_python_protection_talk_to_each_other_through_key_updates(
        client_native, server_native):
    pair = Pair(settings=QuicSettings(native_protection=client_native))
    pair.router.settings = QuicSettings(native_protection=server_native)
    pair.pump()
    assert pair.client._handshake_complete and pair.server._handshake_complete
    for conn, native in ((pair.client, client_native), (pair.server, server_native)):
        native = native and native_quic.AVAILABLE
        one_rtt = conn._cryptos[Epoch.ONE_RTT]
        kinds = {type(one_rtt.send.aead), type(one_rtt.recv.aead), type(one_rtt.send.hp)}
        assert kinds == ({native_quic.Aead, native_quic.HeaderProtection} if native
                         else {AEAD, HeaderProtection})
    assert stream_through(pair, 300_000) == 300_000
    pair.client.request_key_update()
    assert stream_through(pair, 200_000) == 200_000
    pair.server.request_key_update()
    assert stream_through(pair, 200_000) == 200_000
    one_rtt = pair.client._cryptos[Epoch.ONE_RTT]
    assert one_rtt.send.key_phase == 0 and one_rtt.recv.key_phase == 0  # two updates
    if client_native and native_quic.AVAILABLE:
        assert isinstance(one_rtt.send.aead, native_quic.Aead)


FALLBACK = r'''
import sys
sys.path.insert(0, sys.argv[1])
from aioquic._crypto import AEAD
from aioquic.tls import Epoch
from p2pd import native_quic
from test_quic_core import Pair
pair = Pair()
pair.pump()
sid = pair.client.get_next_available_stream_id()
pair.client.send_stream_data(sid, b"x" * 100_000, end_stream=True)
pair.pump(200)
got = sum(len(e.data) for e in pair.events(pair.server) if hasattr(e, "data"))
print(native_quic.AVAILABLE, type(pair.client._cryptos[Epoch.ONE_RTT].send.aead) is AEAD, got)
'''


def test_without_the_native_module_aioquics_protection_runs():
    """P2PD_NATIVE=0 (as a package built without OpenSSL headers): the defaults work."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", FALLBACK, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, P2PD_NATIVE="0"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "100000"]
