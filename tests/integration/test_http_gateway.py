"""The gateway, the status JSON and the metrics endpoint of real daemons, over real sockets."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest
from httpdaemon import HTTPDaemon

from p2pd.blocks.cid import CID
from p2pd.blocks.dagpb import read_varint
from p2pd.blocks.exporter import export_file


def get(url: str, headers: dict | None = None, method: str = "GET", timeout: float = 30):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw_request(base: str, data: bytes, timeout: float = 10) -> bytes:
    host, port = base.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("gw")
    big = d / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    site = d / "site"
    site.mkdir()
    (site / "notes.txt").write_text("hello gateway\n")
    (site / "page.html").write_text("<!doctype html><p>hi</p>")
    (site / "sub dir").mkdir()
    (site / "sub dir" / "x.json").write_text('{"a": 1}')
    with HTTPDaemon() as daemon:
        yield daemon, daemon.add(big), big.read_bytes(), daemon.add(site)


def test_a_file_added_with_p2pd_add_comes_back_byte_for_byte(served):
    daemon, big, data, _ = served
    status, headers, body = get(f"{daemon.http}ipfs/{big}")
    assert status == 200 and body == data
    assert headers["Content-Length"] == str(len(data))
    assert headers["Accept-Ranges"] == "bytes" and headers["Etag"] == f'"{big}"'


def test_range_requests_give_206_with_exactly_the_bytes_asked(served):
    daemon, big, data, _ = served
    for header, (lo, hi) in (("bytes=0-9", (0, 9)), ("bytes=262140-262150", (262140, 262150)),
                             ("bytes=-100", (len(data) - 100, len(data) - 1)),
                             ("bytes=3000000-", (3000000, len(data) - 1))):
        status, headers, body = get(f"{daemon.http}ipfs/{big}", {"Range": header})
        assert status == 206, header
        assert body == data[lo:hi + 1], header
        assert headers["Content-Range"] == f"bytes {lo}-{hi}/{len(data)}"


def _byteranges(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(Content-Type, Content-Range, bytes) of each part of a multipart/byteranges body."""
    boundary = content_type.split("boundary=", 1)[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = body[:-len(boundary) - 8].split(b"\r\n--" + boundary + b"\r\n")
    assert parts[0] == b""
    out = []
    for part in parts[1:]:
        head, _, data = part.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        out.append((fields["Content-Type"], fields["Content-Range"], data))
    return out


def test_several_ranges_are_one_multipart_byteranges_answer(served):
    daemon, big, data, _ = served
    size = len(data)
    status, headers, body = get(f"{daemon.http}ipfs/{big}",
                                {"Range": "bytes=0-9, 262140-262150,-5,5-12"})
    assert status == 206 and "Content-Range" not in headers
    assert headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert int(headers["Content-Length"]) == len(body)
    parts = _byteranges(headers["Content-Type"], body)
    # 0-9 and 5-12 overlap: merged; the parts come in byte order
    assert [(r, d) for _t, r, d in parts] == [
        (f"bytes 0-12/{size}", data[:13]), (f"bytes 262140-262150/{size}", data[262140:262151]),
        (f"bytes {size - 5}-{size - 1}/{size}", data[-5:])]
    assert {t for t, _r, _d in parts} == {"application/octet-stream"}
    # one of them outside the content: dropped; all outside: 416
    status, headers, body = get(f"{daemon.http}ipfs/{big}", {"Range": f"bytes=0-1,{size}-"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 0-1/{size}", data[:2])
    status, _, _ = get(f"{daemon.http}ipfs/{big}", {"Range": f"bytes={size}-,{size + 5}-"})
    assert status == 416
    many = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17))
    status, _, body = get(f"{daemon.http}ipfs/{big}", {"Range": many})
    assert status == 200 and body == data  # past 16 ranges the header is ignored


def test_unsatisfiable_and_huge_ranges_are_416_or_ignored(served):
    daemon, big, data, _ = served
    status, headers, _ = get(f"{daemon.http}ipfs/{big}", {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    status, _, body = get(f"{daemon.http}ipfs/{big}", {"Range": "bytes=0-" + "9" * 5000})
    assert status == 200 and body == data  # not one byte range we can read: served whole


def test_head_has_the_headers_of_get_and_no_body(served):
    daemon, big, data, _ = served
    status, headers, body = get(f"{daemon.http}ipfs/{big}", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(data))


def test_directories_list_their_entries_and_files_get_their_content_type(served):
    daemon, _, _, site = served
    status, headers, _ = get(f"{daemon.http}ipfs/{site}".replace("http://", "http://"),
                             timeout=10)
    assert status == 200  # urllib followed the 301 to the trailing slash
    status, headers, body = get(f"{daemon.http}ipfs/{site}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'href="notes.txt"' in body and b'href="sub%20dir"' in body
    status, headers, body = get(f"{daemon.http}ipfs/{site}/notes.txt")
    assert (status, body) == (200, b"hello gateway\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    status, headers, body = get(f"{daemon.http}ipfs/{site}/sub%20dir/x.json")
    assert (status, body, headers["Content-Type"]) == (200, b'{"a": 1}', "application/json")
    status, _, _ = get(f"{daemon.http}ipfs/{site}/missing.txt")
    assert status == 404


def test_format_raw_is_the_block_itself_and_verifies(served):
    daemon, _, _, site = served
    for url, headers in ((f"{daemon.http}ipfs/{site}?format=raw", {}),
                         (f"{daemon.http}ipfs/{site}", {"Accept": "application/vnd.ipld.raw"})):
        status, got, body = get(url, headers)
        assert status == 200 and got["Content-Type"] == "application/vnd.ipld.raw"
        assert CID.decode(site).verify(body)


def _car_blocks(body: bytes) -> tuple[bytes, list[tuple[CID, bytes]]]:
    n, pos = read_varint(body, 0, len(body), "header")
    header, pos = body[pos:pos + n], pos + n
    blocks = []
    while pos < len(body):
        n, pos = read_varint(body, pos, len(body), "section")
        section, pos = body[pos:pos + n], pos + n
        cid, used = CID.read(section)
        blocks.append((cid, section[used:]))
    return header, blocks


def test_format_car_holds_every_block_of_the_dag_each_verifying(served):
    daemon, big, data, site = served
    status, headers, body = get(f"{daemon.http}ipfs/{big}",
                                {"Accept": "application/vnd.ipld.car"})
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.ipld.car")
    header, blocks = _car_blocks(body)
    assert CID.decode(big).to_bytes() in header and b"version" in header
    assert all(cid.verify(block) for cid, block in blocks)
    store = {c.multihash: b for c, b in blocks}

    class Store:
        def get(self, cid):
            return store[cid.multihash]

    rebuilt = b"".join(export_file(Store(), CID.decode(big)))
    assert hashlib.sha256(rebuilt).digest() == hashlib.sha256(data).digest()
    status, _, body = get(f"{daemon.http}ipfs/{site}/sub%20dir/x.json?format=car")
    _, blocks = _car_blocks(body)
    assert blocks[0][0] == CID.decode(site)  # the path's blocks come first
    assert blocks[-1][1] == b'{"a": 1}' or any(b'{"a": 1}' in b for _, b in blocks)


@pytest.mark.parametrize("path, status", [
    ("/ipfs/{site}/../{big}", 400), ("/ipfs/{site}/%2e%2e/x", 400),
    ("/ipfs/{site}/a%2Fb", 400), ("/ipfs/{site}/a%00b", 400), ("/ipfs/QmBadCid", 400),
    ("/ipfs/{site}/notes.txt/deeper", 404), ("/ipns/example.com", 404), ("/etc/passwd", 404),
    ("/ipfs/{site}?format=tar", 400), ("/ipfs/%ff%fe", 400),
])
def test_bad_paths_are_refused_with_a_clear_status(served, path, status):
    daemon, big, _, site = served
    target = path.format(site=site, big=big)
    answer = raw_request(daemon.http, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      "Connection: close\r\n\r\n".encode())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /ipfs/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET " + b"/ipfs/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
])
def test_malformed_requests_get_an_error_and_the_listener_serves_on(served, request_bytes,
                                                                    status):
    daemon = served[0]
    answer = raw_request(daemon.http, request_bytes)
    assert answer.split(b" ")[1] == str(status).encode(), answer[:200]
    assert get(f"{daemon.http}api/status")[0] == 200


def test_a_page_naming_another_host_is_refused(served):
    daemon = served[0]
    for host, status in (("evil.example:8080", 403), ("localhost:1", 200), ("[::1]:2", 200),
                         ("127.0.0.1", 200)):
        answer = raw_request(daemon.http, f"GET /api/status HTTP/1.1\r\nHost: {host}\r\n"
                                          "Connection: close\r\n\r\n".encode())
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (host, answer[:100])


def test_a_cid_nobody_has_is_504_after_the_bounded_wait(tmp_path):
    with HTTPDaemon(home=True, block_timeout="1s") as daemon, HTTPDaemon() as peer:
        missing = CID.for_block(b"nobody has this block " + os.urandom(8))
        status, _, body = get(f"{daemon.http}ipfs/{missing}", timeout=20)
        assert status == 504 and b"no peer is connected" in body  # nobody to ask: at once
        daemon.cli("connect", f"{peer.addr}/p2p/{peer.peer_id}")
        started = time.monotonic()
        status, _, body = get(f"{daemon.http}ipfs/{missing}", timeout=20)
        assert status == 504 and b"not found within 1 s" in body
        assert 0.9 < time.monotonic() - started < 10
        # and the daemon still answers everything else
        assert get(f"{daemon.http}api/status")[0] == 200


def test_status_json_names_the_peer_its_addresses_and_the_repo(served):
    daemon, big, _, site = served
    status, headers, body = get(f"{daemon.http}api/status")
    s = json.loads(body)
    assert s["peer_id"] == daemon.peer_id and daemon.addr in s["addrs"]
    assert s["reachability"]["Reachability"] in ("unknown", "public", "private")
    pins = {p["cid"] for p in s["repo"]["pins"]}
    assert {big, site} <= pins and s["repo"]["pin_count"] >= 2
    assert s["repo"]["disk_bytes"] > 3 * 1024 * 1024


def test_too_many_connections_are_told_503_and_the_rest_are_served(served):
    daemon = served[0]
    host, port = daemon.http.split("//")[1].rstrip("/").split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(64)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection((host, int(port)), timeout=10)
        answer = extra.recv(1000)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while get(f"{daemon.http}api/status")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_client_that_never_finishes_its_request_is_closed(served):
    # head_timeout is 10 s: a client that sends half a request line is cut off after it
    daemon = served[0]
    host, port = daemon.http.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET /ipfs/")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert 5 < time.monotonic() - started < 25


def _metrics(url: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = get(url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_connections_protocol_bytes_and_bitswap_between_two_daemons(tmp_path):
    data = os.urandom(700_000)
    (tmp_path / "f.bin").write_bytes(data)
    with HTTPDaemon() as a, HTTPDaemon() as b:
        cid = a.add(tmp_path / "f.bin")
        b.cli("connect", f"{a.addr}/p2p/{a.peer_id}")
        assert b.cli("cat", cid).stdout == data
        ma, mb = _metrics(a.metrics), _metrics(b.metrics)
        assert ma[("p2pd_connections", frozenset({("direction", "inbound"),
                                                  ("transport", "tcp")}))] == 1
        assert mb[("p2pd_connections", frozenset({("direction", "outbound"),
                                                  ("transport", "tcp")}))] == 1
        assert ma[("p2pd_peers", frozenset())] == 1
        sent = ma[("p2pd_bitswap_bytes_total", frozenset({("direction", "sent")}))]
        received = mb[("p2pd_bitswap_bytes_total", frozenset({("direction", "received")}))]
        assert sent >= len(data) and received >= len(data)
        assert mb[("p2pd_bitswap_blocks_total", frozenset({("direction", "received")}))] >= 3
        bitswap_in = sum(v for (name, labels), v in mb.items()
                         if name == "p2pd_protocol_bytes_total"
                         and ("direction", "in") in labels
                         and any(k == "protocol" and "bitswap" in val for k, val in labels))
        assert bitswap_in >= len(data)
        for m in (ma, mb):  # identify's answer arrives with the negotiation: counted too
            assert m[("p2pd_protocol_bytes_total",
                      frozenset({("protocol", "/ipfs/id/1.0.0"), ("direction", "in")}))] > 0
        assert ma[("p2pd_streams_opened_total",
                   frozenset({("protocol", "/ipfs/id/1.0.0"), ("direction", "inbound")}))] >= 1
        assert ("p2pd_info", frozenset({("peer_id", a.peer_id), ("version", "0.1.0")})) in ma
        assert ma[("p2pd_blockstore_disk_bytes", frozenset())] > len(data)
        kubo_path = _metrics(a.metrics.replace("/metrics", "/debug/metrics/prometheus"))
        assert ("p2pd_peers", frozenset()) in kubo_path
        assert get(a.metrics.replace("/metrics", "/other"))[0] == 404


def test_scraping_under_load_is_cached_and_keeps_the_node_answering(served):
    import statistics
    import threading

    from p2pd.cli.client import ControlClient
    from p2pd.proto import daemon_pb2 as pb

    daemon = served[0]
    client = ControlClient.for_address(daemon.control, 30)

    def control_latency(n: int = 60) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.request(pb.Request(type=pb.Request.IDENTIFY))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    host, port = daemon.metrics.split("//")[1].split("/")[0].split(":")
    stop = threading.Event()
    scrapes = []

    def scrape() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while not stop.is_set():
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            assert response.status == 200 and b"p2pd_peers" in response.read()
            scrapes.append(1)
        conn.close()

    threads = [threading.Thread(target=scrape) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        loaded = control_latency()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(scrapes) > 100  # the scrapers really ran
    # four scrapers in a loop leave the control socket answering in milliseconds
    assert loaded < 0.05, f"median IDENTIFY {loaded * 1000:.1f} ms under scrape load"
    assert get(f"{daemon.http}api/status")[0] == 200


def test_blocks_that_fail_verification_are_never_served(tmp_path):
    from p2pd.blocks import dagpb
    from p2pd.store import Datastore

    data = os.urandom(5 * 262144)  # five leaves under one root
    (tmp_path / "f.bin").write_bytes(data)
    first = HTTPDaemon(home=True, block_timeout="1s")
    try:
        cid = CID.decode(first.add(tmp_path / "f.bin"))
        small = CID.decode(first.add_bytes(tmp_path / "s.txt", b"small and whole\n"))
    finally:
        first.stop(remove=False)
    with Datastore.open(first.dir / "home" / "datastore") as ds:
        root = ds.blocks.get(cid.multihash)
        third = dagpb.decode_node(root).links[2].cid
        ds.blocks.put(third.multihash, b"X" * 262144)  # the third leaf, rotten on disk
        ds.blocks.put(small.multihash, b"rotten")
    with HTTPDaemon(home=True, block_timeout="1s", directory=first.dir) as daemon:
        status, _, body = get(f"{daemon.http}ipfs/{small}")
        assert status == 502 and b"does not match its CID" in body and b"rotten" not in body
        host, port = daemon.http.split("//")[1].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", f"/ipfs/{cid}")
        response = conn.getresponse()
        assert response.status == 200  # the head went out with the first leaf
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
        partial = cut.value.partial
        assert partial == data[:len(partial)] and len(partial) <= 2 * 262144
        assert b"X" * 1024 not in partial
        conn.close()
        # the CAR of it is cut short too, before the bad block
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", f"/ipfs/{cid}?format=car")
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
        assert b"X" * 1024 not in cut.value.partial
        conn.close()
        assert get(f"{daemon.http}api/status")[0] == 200
    err = daemon.proc.stderr.read()
    assert "response cut short" not in err  # said at info level only
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2 and all("quarantined, not served" in line for line in errors), err


def test_a_file_another_peer_has_is_fetched_over_bitswap_and_served(tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "remote.bin").write_bytes(data)
    with HTTPDaemon() as a, HTTPDaemon() as b:
        cid = a.add(tmp_path / "remote.bin")
        b.cli("connect", f"{a.addr}/p2p/{a.peer_id}")
        status, _, body = get(f"{b.http}ipfs/{cid}", {"Range": "bytes=1000000-1000099"})
        assert status == 206 and body == data[1000000:1000100]
        status, _, body = get(f"{b.http}ipfs/{cid}")
        assert status == 200 and body == data


def test_dht_metrics_count_queries_their_latency_and_the_routing_table():
    with HTTPDaemon("-dhtServer") as a, HTTPDaemon("-dhtServer") as b, \
            HTTPDaemon("-dhtServer") as c:
        b.cli("connect", f"{a.addr}/p2p/{a.peer_id}")
        c.cli("connect", f"{a.addr}/p2p/{a.peer_id}")
        found = b.cli("dht", "findpeer", c.peer_id, "--timeout", "20", check=False)
        assert found.returncode == 0, found.stderr
        deadline = time.monotonic() + 10
        while True:
            mb = _metrics(b.metrics)
            ok = mb.get(("p2pd_dht_queries_total", frozenset({("outcome", "ok")})), 0)
            if ok >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ok >= 1
        assert mb[("p2pd_dht_routing_table_peers", frozenset())] >= 1
        assert mb[("p2pd_dht_query_duration_seconds_count", frozenset())] == ok
        assert mb[("p2pd_dht_server_mode", frozenset())] == 1
        ma = _metrics(a.metrics)
        assert ma[("p2pd_dht_queries_served_total", frozenset())] >= 1


def test_pubsub_metrics_count_messages_delivered():
    import subprocess
    import sys

    with HTTPDaemon("-pubsub") as a, HTTPDaemon("-pubsub") as b:
        sub = subprocess.Popen([sys.executable, "-m", "p2pd", "pubsub", "sub", "news", "--api",
                                b.control], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            b.cli("connect", f"{a.addr}/p2p/{a.peer_id}")
            deadline = time.monotonic() + 20
            delivered = 0
            while delivered < 1:
                assert time.monotonic() < deadline, "no message delivered"
                a.cli("pubsub", "pub", "news", "hello")
                time.sleep(0.5)
                mb = _metrics(b.metrics)
                delivered = mb[("p2pd_pubsub_messages_total",
                                frozenset({("outcome", "delivered")}))]
            assert mb[("p2pd_pubsub_peers", frozenset())] == 1
            assert mb[("p2pd_pubsub_topics", frozenset())] == 1
            assert mb[("p2pd_pubsub_messages_total", frozenset({("outcome", "rejected")}))] == 0
        finally:
            sub.kill()
            sub.wait()


def test_a_client_holding_the_etag_gets_304_without_the_body(served):
    daemon, big, _, site = served
    for url in (f"{daemon.http}ipfs/{big}", f"{daemon.http}ipfs/{site}/",
                f"{daemon.http}ipfs/{site}?format=raw"):
        status, headers, _ = get(url)
        assert status == 200
        status, again, body = get(url, {"If-None-Match": headers["Etag"]})
        assert (status, body, again["Etag"]) == (304, b"", headers["Etag"])
        assert get(url, {"If-None-Match": '"something-else"'})[0] == 200


def test_filename_and_download_set_content_disposition_and_roots_name_the_path(served):
    daemon, big, _, site = served
    status, headers, _ = get(f"{daemon.http}ipfs/{big}?filename=report.pdf&download=true",
                             method="HEAD")
    assert status == 200 and headers["Content-Disposition"] == \
        'attachment; filename="report.pdf"'
    assert headers["Content-Type"] == "application/pdf"
    _, headers, _ = get(f"{daemon.http}ipfs/{big}?filename=a%22b%2F..%0d.txt", method="HEAD")
    assert headers["Content-Disposition"] == 'inline; filename="a_b_.._.txt"'
    _, headers, _ = get(f"{daemon.http}ipfs/{site}/sub%20dir/x.json", method="HEAD")
    roots = headers["X-Ipfs-Roots"].split(",")
    assert roots[0] == site and len(roots) == 3


def test_a_taken_port_is_said_in_one_line_and_the_daemon_runs_on():
    from test_daemon_harness import Daemon

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        d = Daemon("-httpAddr", f"127.0.0.1:{port}")
        try:
            assert d.peer_id.startswith("12D3")  # ready lines as always
        finally:
            d.stop()
    err = d.proc.stderr.read()
    assert f"status page and gateway not started: cannot listen on 127.0.0.1:{port}" in err
    assert "-httpAddr" in err and "Traceback" not in err
