"""The sans-IO parts of our swarm: multistream-select, the Noise XX handshake, identify,
binary multiaddrs and signature checks for every key type."""

from __future__ import annotations

import nacl.signing
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from p2pd.net import identify as idproto
from p2pd.net.multistream import Dialer, Listener, MultistreamError, NoProtocol, encode
from p2pd.net.noise_wire import NoiseCipherPair
from p2pd.net.noise_xx import FrameReader, Handshake, HandshakeError, frame
from p2pd.net.swarm import split_multiaddr, strip_p2p, tcp_multiaddr, tcp_target
from p2pd.peerkeys import PeerKeyError, peer_id_from_public_key, verify_signature


def run_negotiation(dialer: Dialer, listener: Listener, cut: int = 1 << 30):
    """Shuttle bytes between the two, in pieces of at most ``cut`` bytes."""
    to_listener = dialer.start()
    to_dialer = listener.start()
    for _ in range(100):
        if dialer.done and listener.done:
            break
        for i in range(0, max(len(to_listener), 1), cut):
            to_dialer += listener.receive(to_listener[i : i + cut])
        to_listener = b""
        for i in range(0, max(len(to_dialer), 1), cut):
            to_listener += dialer.receive(to_dialer[i : i + cut])
        to_dialer = b""
    return dialer.protocol, listener.protocol


@pytest.mark.parametrize("cut", [1, 3, 1 << 30])
def test_multistream_settles_on_the_first_protocol_both_speak(cut):
    d, li = Dialer(["/a", "/b", "/c"]), Listener({"/b", "/c"})
    assert run_negotiation(d, li, cut) == ("/b", "/b")


def test_multistream_refused_everywhere_is_no_protocol():
    d, li = Dialer(["/x", "/y"]), Listener({"/b"})
    with pytest.raises(NoProtocol):
        run_negotiation(d, li)


def test_multistream_keeps_the_bytes_after_the_answer():
    d = Dialer(["/a"])
    d.start()
    out = d.receive(encode("/multistream/1.0.0") + encode("/a") + b"payload")
    assert out == b"" and d.protocol == "/a" and d.leftover == b"payload"
    li = Listener({"/a"})
    li.receive(encode("/multistream/1.0.0") + encode("/a") + b"first bytes")
    assert li.protocol == "/a" and li.leftover == b"first bytes"


def test_multistream_ls_lists_the_protocols():
    li = Listener({"/a"}, lambda: ["/a", "/b"])
    out = li.receive(encode("/multistream/1.0.0") + encode("ls"))
    listing = encode("/a") + encode("/b")
    assert out.endswith(listing + b"\n")


@pytest.mark.parametrize("garbage", [
    b"\x05hello",  # no newline
    encode("/not-multistream/1.0.0"),
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a runaway varint
    b"\x80\x80\x04" + b"x" * 10,  # a 64 KiB message
])
def test_multistream_refuses_what_is_not_multistream(garbage):
    with pytest.raises(MultistreamError):
        Listener({"/a"}).receive(garbage)


def test_multistream_bounds_the_proposals():
    li = Listener(set())
    data = encode("/multistream/1.0.0") + b"".join(encode(f"/p{i}") for i in range(40))
    with pytest.raises(MultistreamError, match="proposals"):
        li.receive(data)


def ed25519():
    sk = nacl.signing.SigningKey.generate()
    pub = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return pub, (lambda d: sk.sign(d).signature)


def handshake_pair(expected=None):
    ipub, isign = ed25519()
    rpub, rsign = ed25519()
    init = Handshake(True, ipub, isign, muxers=["/yamux/1.0.0"],
                     expected_peer=expected(rpub) if expected else None)
    resp = Handshake(False, rpub, rsign)
    return init, resp, ipub, rpub


def test_noise_xx_both_sides_agree_on_keys_and_identities():
    init, resp, ipub, rpub = handshake_pair(peer_id_from_public_key)
    reader = FrameReader()
    reader.feed(frame(init.write()))
    resp.read(reader.next())
    init.read(resp.write())
    resp.read(init.write())
    a, b = init.result, resp.result
    assert a.remote_peer == peer_id_from_public_key(rpub)
    assert b.remote_peer == peer_id_from_public_key(ipub)
    assert b.remote_muxers == ["/yamux/1.0.0"]
    assert (a.send_key, a.recv_key) == (b.recv_key, b.send_key)
    sealed = NoiseCipherPair(a.send_key, a.recv_key).seal(b"hello")
    assert NoiseCipherPair(b.send_key, b.recv_key).open(sealed) == [b"hello"]


def test_noise_xx_refuses_the_wrong_peer():
    init, resp, _, _ = handshake_pair(lambda _pub: b"\x00\x24" + bytes(36))
    resp.read(init.write())
    with pytest.raises(HandshakeError, match="not the one dialed"):
        init.read(resp.write())


def test_noise_xx_refuses_a_tampered_message():
    init, resp, _, _ = handshake_pair()
    resp.read(init.write())
    m2 = bytearray(resp.write())
    m2[40] ^= 1
    with pytest.raises(HandshakeError):
        init.read(bytes(m2))


def test_noise_xx_refuses_a_signature_by_another_key():
    ipub, _ = ed25519()
    _, other_sign = ed25519()
    rpub, rsign = ed25519()
    init = Handshake(True, ipub, other_sign)
    resp = Handshake(False, rpub, rsign)
    resp.read(init.write())
    init.read(resp.write())
    with pytest.raises(HandshakeError, match="signature"):
        resp.read(init.write())


def test_noise_xx_refuses_out_of_order_and_short_messages():
    init, resp, _, _ = handshake_pair()
    with pytest.raises(HandshakeError):
        init.read(b"x" * 100)  # the initiator writes first
    with pytest.raises(HandshakeError, match="short"):
        resp.read(b"x" * 10)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pubkey_proto(key_type: int, data: bytes) -> bytes:
    return bytes([0x08, key_type, 0x12]) + _varint(len(data)) + data


def test_signatures_of_every_key_type_verify_and_forgeries_do_not():
    msg = b"noise-libp2p-static-key:" + bytes(32)
    r = rsa.generate_private_key(65537, 2048)
    rsa_pub = pubkey_proto(0, r.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    rsa_sig = r.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    k1 = ec.generate_private_key(ec.SECP256K1())
    k1_pub = pubkey_proto(2, k1.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint))
    k1_sig = k1.sign(msg, ec.ECDSA(hashes.SHA256()))
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256_pub = pubkey_proto(3, p256.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    p256_sig = p256.sign(msg, ec.ECDSA(hashes.SHA256()))
    ed_pub, ed_sign = ed25519()
    for pub, sig in [(rsa_pub, rsa_sig), (k1_pub, k1_sig), (p256_pub, p256_sig),
                     (ed_pub, ed_sign(msg))]:
        assert verify_signature(pub, msg, sig)
        assert not verify_signature(pub, msg + b"!", sig)
        assert not verify_signature(pub, msg, b"\x30\x02\x00\x00")
    assert len(peer_id_from_public_key(rsa_pub)) == 34  # sha2-256 multihash
    small = rsa.generate_private_key(65537, 1024)
    small_pub = pubkey_proto(0, small.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(PeerKeyError, match="bits"):
        verify_signature(small_pub, msg, small.sign(msg, padding.PKCS1v15(), hashes.SHA256()))
    with pytest.raises(PeerKeyError):
        verify_signature(pubkey_proto(9, b"x"), msg, b"")
    with pytest.raises(PeerKeyError):
        verify_signature(pubkey_proto(2, b"\x02" + bytes(5)), msg, k1_sig)


def test_identify_round_trip_and_bounds():
    msg = idproto.Identify(public_key=b"k", listen_addrs=[tcp_multiaddr("127.0.0.1", 4001)],
                           protocols=["/a", "/b"], observed_addr=tcp_multiaddr("::1", 9),
                           protocol_version="ipfs/0.1.0", agent_version="x/1")
    assert idproto.decode(msg.encode()) == msg
    many = idproto.Identify(protocols=[f"/p{i}" for i in range(300)])
    with pytest.raises(idproto.IdentifyError, match="protocols"):
        idproto.decode(many.encode())
    with pytest.raises(idproto.IdentifyError):
        idproto.decode(b"\x1a\x05ab")  # a field past the end


def test_binary_multiaddrs():
    a4 = tcp_multiaddr("127.0.0.1", 4001)
    assert tcp_target(a4) == ("127.0.0.1", 4001, 2)
    a6 = tcp_multiaddr("::1", 4001)
    assert tcp_target(a6)[:2] == ("::1", 4001)
    peer = b"\x00\x24" + bytes(36)
    with_p2p = a4 + b"\xa5\x03" + bytes([len(peer)]) + peer
    assert tcp_target(with_p2p) == tcp_target(a4) and strip_p2p(with_p2p) == a4
    quic = b"\x04\x7f\x00\x00\x01\x91\x02\x0f\xa1\xcc\x03"  # /udp/4001/quic-v1
    assert tcp_target(quic) is None
    dns = b"\x36\x09localhost\x06\x0f\xa1"
    assert tcp_target(dns)[:2] == ("localhost", 4001)
    with pytest.raises(ValueError):
        split_multiaddr(b"\x04\x7f\x00")


def test_ed25519_identity_signatures_go_through_the_native_rule_set(monkeypatch):
    """The Noise payload's Ed25519 signature is checked by p2pd.native (one rule set,
    docs/ed25519.md): a mixed-order key and R gets native's answer, whichever core runs."""
    import json
    from pathlib import Path

    from p2pd import native

    calls = []
    real = native.verify
    monkeypatch.setattr(native, "verify", lambda *a: calls.append(a) or real(*a))
    sk = nacl.signing.SigningKey(bytes(range(32)))
    pub = pubkey_proto(1, bytes(sk.verify_key))
    assert verify_signature(pub, b"hello", sk.sign(b"hello").signature)
    assert not verify_signature(pub, b"hellO", sk.sign(b"hello").signature)
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "ed25519_speccheck_cases.json"
    case4 = json.loads(vectors.read_text())[4]
    odd = pubkey_proto(1, bytes.fromhex(case4["pub_key"]))
    assert verify_signature(odd, bytes.fromhex(case4["message"]),
                            bytes.fromhex(case4["signature"])) == real(
        bytes.fromhex(case4["pub_key"]), bytes.fromhex(case4["message"]),
        bytes.fromhex(case4["signature"]))
    assert len(calls) == 3
