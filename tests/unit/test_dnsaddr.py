"""/dnsaddr resolution: the DNS codec (fuzzed) and recursive, peer-filtered resolution
against a local DNS server."""

import sys
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import dnsaddr
from p2pd.net.dnsaddr import DNSError, encode_query, parse_txt_response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dnsserver import TxtServer  # noqa: E402

A = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
B = "QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa"


def test_query_encoding():
    q = encode_query("_dnsaddr.example.org", 0x1234)
    assert q[:2] == b"\x12\x34" and b"\x08_dnsaddr\x07example\x03org\x00" in q
    for bad in ("a" * 70 + ".org", "bad..name"):
        with pytest.raises(DNSError):
            encode_query(bad, 1)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 65535))
def test_response_parser_fuzz_raises_only_dns_errors(data, qid):
    try:
        out = parse_txt_response(data, qid)
    except DNSError:
        return
    assert isinstance(out, list) and len(out) <= dnsaddr.MAX_RESULTS


def test_resolution_is_recursive_and_filtered_by_peer_id(monkeypatch):
    monkeypatch.delenv("P2PD_DNS_RESOLVER", raising=False)  # the local server, not conftest's
    server = TxtServer({
        "_dnsaddr.boot.test": ["dnsaddr=/dnsaddr/east.boot.test",
                               f"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/{B}", "unrelated=1"],
        "_dnsaddr.east.boot.test": [f"dnsaddr=/ip4/127.0.0.2/tcp/4001/p2p/{A}",
                                    f"dnsaddr=/ip6/::1/tcp/4001/p2p/{A}"],
    })
    resolver = dnsaddr.resolver_address(server.address)
    try:
        all_ = trio.run(dnsaddr.resolve, "/dnsaddr/boot.test", resolver)
        assert sorted(all_) == sorted([f"/ip4/127.0.0.2/tcp/4001/p2p/{A}",
                                       f"/ip6/::1/tcp/4001/p2p/{A}",
                                       f"/ip4/127.0.0.1/tcp/4001/p2p/{B}"])
        only_b = trio.run(dnsaddr.resolve, f"/dnsaddr/boot.test/p2p/{B}", resolver)
        assert only_b == [f"/ip4/127.0.0.1/tcp/4001/p2p/{B}"]
        assert trio.run(dnsaddr.resolve, "/dnsaddr/missing.test", resolver) == []
        assert trio.run(dnsaddr.resolve, "/ip4/1.2.3.4/tcp/1", resolver) == ["/ip4/1.2.3.4/tcp/1"]
    finally:
        server.close()


def test_a_loop_of_dnsaddr_names_is_bounded(monkeypatch):
    monkeypatch.delenv("P2PD_DNS_RESOLVER", raising=False)
    server = TxtServer({"_dnsaddr.loop.test": ["dnsaddr=/dnsaddr/loop.test"]})
    try:
        with pytest.raises(DNSError, match="deeper"):
            trio.run(dnsaddr.resolve, "/dnsaddr/loop.test",
                     dnsaddr.resolver_address(server.address))
    finally:
        server.close()
