"""The HTTP side's sans-IO parts: addresses, ranges, gateway paths, content types, the
metrics exposition of a counters snapshot, and the request reader."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2pd.blocks.cid import CID
from p2pd.config import parse_http_addr, resolve
from p2pd.errors import ConfigError
from p2pd.http.gateway import (
    GatewayError,
    car_block,
    car_header,
    content_type,
    parse_gateway_path,
    response_format,
)
from p2pd.http.metrics import Metrics
from p2pd.http.ranges import RangeNotSatisfiable, multipart_parts, parse_range, parse_ranges
from p2pd.http.source import Counters
from p2pd.http.wire import BadRequest, HTTPConnection, Request
from p2pd.stats import Histogram

CID_TEXT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9090", ("127.0.0.1", 9090)),
    ("9090", ("127.0.0.1", 9090)), ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::1]:80", ("::1", 80)),
    ("localhost:5", ("127.0.0.1", 5)), ("/ip4/127.0.0.1/tcp/7", ("127.0.0.1", 7)),
    ("", None), ("off", None), ("none", None),
])
def test_http_addresses_default_to_loopback(text, want):
    assert parse_http_addr(text, "x") == want


@pytest.mark.parametrize("text", ["example.com:80", "127.0.0.1:99999", "127.0.0.1:x",
                                  "/ip4/1.2.3.4/udp/1", "/dns/x/tcp/1"])
def test_bad_http_addresses_are_refused_with_where_they_came_from(text):
    with pytest.raises(ConfigError, match="-metricsAddr"):
        parse_http_addr(text, "-metricsAddr")


def test_metrics_and_http_are_off_in_harness_mode_and_the_home_config_has_the_page_on():
    assert resolve({}).http_listen is None and resolve({}).metrics_listen is None
    home = resolve({}, {})
    assert home.http_listen == ("127.0.0.1", 8080) and home.metrics_listen is None
    flags = resolve({"metricsAddr": ":9000", "httpAddr": "off"}, {})
    assert flags.metrics_listen == ("127.0.0.1", 9000) and flags.http_listen is None
    assert resolve({"metricsAddr": "127.0.0.1:9"}).not_implemented == []
    doc = {"http": {"listen": "127.0.0.1:0", "block_timeout": "2s"}, "metrics": {"listen": ":1"}}
    c = resolve({}, doc)
    assert (c.http_listen, c.http_block_timeout, c.metrics_listen) == (
        ("127.0.0.1", 0), 2.0, ("127.0.0.1", 1))


@pytest.mark.parametrize("header, size, want", [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=-1000", 100, (0, 99)), ("bytes=50-5000", 100, (50, 99)),
    ("bytes=0-0", 1, (0, 0)), (None, 100, None), ("items=0-1", 100, None),
    ("bytes=0-1,5-6", 100, None), ("bytes=9-1", 100, None), ("bytes=-", 100, None),
    ("bytes=0-" + "9" * 30, 100, None),
])
def test_one_byte_range_is_read_and_anything_else_ignored(header, size, want):
    assert parse_range(header, size) == want


@pytest.mark.parametrize("header, size, want", [
    ("bytes=0-1,5-6", 100, [(0, 1), (5, 6)]), ("bytes=0-10,5-20,-5", 100, [(0, 20), (95, 99)]),
    ("bytes=0-1, 2-3", 100, [(0, 3)]), ("bytes=50-,0-0", 100, [(0, 0), (50, 99)]),
    ("bytes=0-1,200-", 100, [(0, 1)]), ("bytes=0-9", 100, [(0, 9)]),
    ("bytes=0-1,x", 100, None), ("bytes=0-1,9-1", 100, None), ("bytes=0-1,", 100, None),
    ("items=0-1,2-3", 100, None), ("bytes=" + ",".join(["0-0"] * 17), 100, None),
])
def test_several_ranges_are_read_sorted_and_merged(header, size, want):
    assert parse_ranges(header, size) == want


def test_several_ranges_none_inside_is_not_satisfiable_and_the_multipart_length_is_exact():
    with pytest.raises(RangeNotSatisfiable):
        parse_ranges("bytes=100-,200-300", 100)
    heads, tail, length = multipart_parts([(0, 1), (5, 9)], 100, "text/plain", "B")
    assert heads[0] == (b"\r\n--B\r\nContent-Type: text/plain\r\n"
                        b"Content-Range: bytes 0-1/100\r\n\r\n")
    assert tail == b"\r\n--B--\r\n"
    assert length == sum(map(len, heads)) + len(tail) + 2 + 5


@pytest.mark.parametrize("header, size", [("bytes=100-", 100), ("bytes=-0", 100),
                                          ("bytes=0-", 0), ("bytes=-5", 0)])
def test_ranges_outside_the_content_are_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_gateway_paths_are_decoded_per_segment():
    gp = parse_gateway_path(f"/ipfs/{CID_TEXT}/a%20b/c.txt")
    assert str(gp.root) == CID_TEXT and gp.segments == ("a b", "c.txt")
    assert not gp.trailing_slash and parse_gateway_path(f"/ipfs/{CID_TEXT}/").trailing_slash
    assert parse_gateway_path(f"/ipfs/{CID_TEXT}//x//").segments == ("x",)


@pytest.mark.parametrize("path, status", [
    ("/ipfs/", 400), ("/ipfs/x", 400), (f"/ipfs/{CID_TEXT}/..", 400),
    (f"/ipfs/{CID_TEXT}/%2E%2E", 400), (f"/ipfs/{CID_TEXT}/a%2Fb", 400),
    (f"/ipfs/{CID_TEXT}/a%00", 400), (f"/ipfs/{CID_TEXT}/%ff", 400), ("/ipns/x", 404),
    ("/ipfs/" + "a" * 5000, 414), ("/ipfs/" + CID_TEXT + "/x" * 70, 400),
])
def test_bad_gateway_paths_are_refused(path, status):
    with pytest.raises(GatewayError) as info:
        parse_gateway_path(path)
    assert info.value.status == status


def test_the_format_comes_from_the_query_or_the_accept_header():
    assert response_format(Request("GET", "/", {"format": "car"})) == "car"
    assert response_format(Request("GET", "/", {}, {"accept": "application/vnd.ipld.raw"})) \
        == "raw"
    assert response_format(Request("GET", "/", {}, {
        "accept": "text/html, application/vnd.ipld.car; version=1"})) == "car"
    assert response_format(Request("GET", "/", {}, {"accept": "*/*"})) == "unixfs"
    with pytest.raises(GatewayError):
        response_format(Request("GET", "/", {"format": "tar"}))


@pytest.mark.parametrize("name, head, want", [
    ("a.txt", b"", "text/plain; charset=utf-8"), ("x.json", b"{}", "application/json"),
    ("", b"\x89PNG\r\n\x1a\nrest", "image/png"), ("", b"<!DOCTYPE html><p>", "text/html; "
                                                  "charset=utf-8"),
    ("", "héllo".encode(), "text/plain; charset=utf-8"),
    ("", b"\x00\x01\x02\xff", "application/octet-stream"),
])
def test_content_types_follow_the_name_then_the_bytes(name, head, want):
    assert content_type(name, head) == want


def test_the_car_header_names_the_root_and_blocks_carry_their_cid():
    cid = CID.for_block(b"x")
    head = car_header(cid)
    assert head[0] == len(head) - 1 and cid.to_bytes() in head and head.endswith(b"version\x01")
    block = car_block(cid, b"x")
    assert block[0] == len(cid.to_bytes()) + 1 and block.endswith(cid.to_bytes() + b"x")


def test_histogram_buckets_are_cumulative():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 1), ("1.0", 3), ("+Inf", 4)] and h.count == 4


def test_the_exposition_is_prometheus_text_of_the_snapshot():
    h = Histogram()
    h.observe(0.02)
    c = Counters(peer_id="12D3x", version="0.1.0", uptime=5.0,
                 connections={("inbound", "tcp"): 2, ("outbound", "ws"): 1},
                 connections_opened={("inbound", "tcp"): 3}, peers=2, streams_open=4,
                 streams_opened={("/ipfs/id/1.0.0", "inbound"): 2},
                 bytes_in={"/ipfs/bitswap/1.2.0": 1000}, bytes_out={"/ipfs/kad/1.0.0": 7},
                 dht={"queries": {"ok": 1, "failed": 2}, "latency": h, "served": 3,
                      "routing_table": 9, "server": True},
                 bitswap={"blocks_sent": 1, "blocks_received": 2, "bytes_sent": 3,
                          "bytes_received": 4, "duplicate_blocks": 0, "peers": 1},
                 pubsub={"delivered": 5, "invalid": 1, "duplicates": 0, "forwarded": 2,
                         "peers": 1, "topics": 1},
                 repo={"disk_bytes": 123, "gc_runs": 3, "auto_gc_runs": 1, "storage_max": 0,
                       "fetches_in_flight": 0})
    text = Metrics(lambda: c).render().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("p2pd_connections", (("direction", "inbound"), ("transport", "tcp")))] == 2
    assert samples[("p2pd_protocol_bytes_total", (("direction", "in"),
                                                  ("protocol", "/ipfs/bitswap/1.2.0")))] == 1000
    assert samples[("p2pd_dht_query_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[("p2pd_dht_queries_total", (("outcome", "failed"),))] == 2
    assert samples[("p2pd_dht_routing_table_peers", ())] == 9
    assert samples[("p2pd_pubsub_messages_total", (("outcome", "rejected"),))] == 1
    assert samples[("p2pd_gc_runs_total", (("trigger", "manual"),))] == 2
    assert samples[("p2pd_bitswap_bytes_total", (("direction", "received"),))] == 4
    assert samples[("p2pd_blockstore_disk_bytes", ())] == 123


def test_the_exposition_is_reused_within_the_scrape_interval():
    calls = []

    def snapshot():
        calls.append(1)
        return Counters()

    m = Metrics(snapshot)
    m.render()
    m.render()
    assert len(calls) == 1


def test_requests_are_read_in_pieces_and_keep_alive_cycles():
    conn = HTTPConnection()
    raw = b"GET /ipfs/x?format=raw&a=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n"
    for i in range(len(raw) - 1):
        conn.receive_data(raw[i:i + 1])
        assert conn.next_request() is None
    conn.receive_data(raw[-1:])
    req = conn.next_request()
    assert (req.method, req.path, req.query, req.header("range")) == (
        "GET", "/ipfs/x", {"format": "raw", "a": "1"}, "bytes=0-1")
    assert conn.body_finished()
    conn.respond(200, [("Content-Length", "0")])
    conn.end()
    assert conn.next_cycle()
    conn.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert conn.next_request().method == "HEAD"


@pytest.mark.parametrize("raw, status", [
    (b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", 405), (b"NOT HTTP\r\n\r\n", 400),
    (b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 100 + b"\r\n", 431),
])
def test_bad_requests_name_their_status(raw, status):
    conn = HTTPConnection()
    conn.receive_data(raw)
    with pytest.raises(BadRequest) as info:
        conn.next_request()
    assert info.value.status == status


async def test_a_streamed_body_releases_its_hold_when_closed_even_if_never_read():
    from contextlib import AsyncExitStack, asynccontextmanager

    from p2pd.errors import BlockNotFound
    from p2pd.http.gateway import HeldBody
    from p2pd.http.server import BodyAborted

    held = []

    @asynccontextmanager
    async def holding():
        held.append(1)
        try:
            yield
        finally:
            held.pop()

    async def chunks(fail: bool):
        yield b"a"
        if fail:
            raise BlockNotFound("gone")
        yield b"b"

    stack = AsyncExitStack()
    await stack.enter_async_context(holding())
    body = HeldBody(chunks(False), stack)
    assert held == [1]
    await body.aclose()  # a HEAD: never iterated
    assert held == []
    stack = AsyncExitStack()
    await stack.enter_async_context(holding())
    body = HeldBody(chunks(True), stack)
    got = []
    with pytest.raises(BodyAborted, match="gone"):
        async for chunk in body:
            got.append(chunk)
    await body.aclose()
    assert got == [b"a"] and held == []
