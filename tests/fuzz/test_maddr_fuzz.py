"""p2pd.maddr (multiaddrs between binary and text without py-multiaddr) says what
py-multiaddr says, or None; never another exception."""

from __future__ import annotations

import multiaddr
from hypothesis import example, given
from hypothesis import strategies as st

from p2pd.maddr import from_text, to_text
from p2pd.maddr import text as maddr_text

_dns = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
_component = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"/ip4/{a}"),
    st.ip_addresses(v=6).map(lambda a: f"/ip6/{a}"),
    st.integers(0, 65535).map(lambda p: f"/tcp/{p}"),
    st.integers(0, 65535).map(lambda p: f"/udp/{p}"),
    _dns.map(lambda d: f"/dns4/{d}"), _dns.map(lambda d: f"/dns/{d}"),
    _dns.map(lambda d: f"/dnsaddr/{d}"), _dns.map(lambda d: f"/sni/{d}"),
    st.sampled_from(["/quic-v1", "/quic", "/ws", "/wss", "/tls", "/noise", "/p2p-circuit",
                     "/webtransport", "/http", "/webrtc-direct", "/webrtc",
                     "/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
                     "/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
                     "/ipcidr/24", "/unix/tmp/p2pd.sock"]),
)


@given(st.lists(_component, min_size=1, max_size=5))
@example(["/unix/tmp/p2pd.sock"])
@example(["/ip6/::ffff:1.2.3.4", "/udp/1", "/quic-v1", "/p2p-circuit"])
def test_text_is_py_multiaddrs_for_every_listed_protocol(parts):
    text = "".join(parts)
    try:
        raw = multiaddr.Multiaddr(text).to_bytes()
    except Exception:
        return  # not a multiaddr py-multiaddr makes (e.g. /unix not last)
    expected = str(multiaddr.Multiaddr(raw))
    got = to_text(raw)
    assert got == expected or (got is None and "%" in expected)  # escaped: left to it
    assert maddr_text(raw) == expected


@given(st.binary(max_size=64))
def test_any_bytes_give_text_or_none(raw):
    text = to_text(raw)
    if text is not None:
        assert text.startswith("/")


def test_an_unlisted_protocol_is_left_to_py_multiaddr():
    raw = multiaddr.Multiaddr("/ip4/1.2.3.4/udp/1/quic-v1/webtransport/certhash/"
                              "uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g").to_bytes()
    assert to_text(raw) is None
    assert maddr_text(raw) == str(multiaddr.Multiaddr(raw))  # text() asks py-multiaddr


@given(st.binary(max_size=64))
def test_text_always_gives_a_string(raw):
    out = maddr_text(raw)
    assert out.startswith("/") or out == "0x" + raw.hex() or (out == "" and not raw)


@given(st.lists(_component, min_size=1, max_size=5))
@example(["/ip4/127.0.0.1", "/tcp/0"])
@example(["/ip6/::ffff:1.2.3.4", "/udp/1", "/quic-v1"])
def test_from_text_is_py_multiaddrs_or_none(parts):
    text = "".join(parts)
    raw = from_text(text)
    if raw is None:
        return
    assert raw == multiaddr.Multiaddr(text).to_bytes()


@given(st.text(max_size=60))
@example("/ip4/1.2.3/tcp/1")
@example("/ip4/01.2.3.4/tcp/1")
@example("/ip4/1.2.3.4/tcp/65536")
@example("/tcp/")
def test_from_text_reads_only_what_py_multiaddr_reads_the_same(text):
    raw = from_text(text)
    if raw is not None:
        assert raw == multiaddr.Multiaddr(text).to_bytes()
