"""Kademlia between our daemons and js-libp2p @libp2p/kad-dht nodes (server mode,
/ipfs/kad/1.0.0) in one local network of 20: 10 of ours, 10 js. Content provided and
values put on either side are found from the other; each side's peers are in the other's
routing tables."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nacl.signing
import pytest

from p2pd.blocks import CID, Codec
from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.proto import daemon_pb2 as pb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from test_daemon_harness import Daemon  # noqa: E402

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None or not (HERE / "node_modules").is_dir(),
                                reason="needs node and npm ci in tests/interop")
N = 10


class JsKad:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([NODE, str(HERE / "kad_node.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        info = json.loads(self.proc.stdout.readline())
        self.peer_id, self.addr = info["peerId"], info["addrs"][0]

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def dht(d: Daemon, **fields) -> list[pb.Response]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(90)
    s.connect(str(d.sock))
    s.sendall(encode_message(pb.Request(type=pb.Request.DHT, dht=pb.DHTRequest(**fields))))
    decoder, out = FrameDecoder(), []
    try:
        while True:
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(s.recv(65536))
            if not out:
                r = decode_response(frame)
            else:  # after BEGIN the daemon streams bare DHTResponses, as the go daemon does
                r = pb.Response(type=pb.Response.OK, dht=pb.DHTResponse.FromString(frame))
            out.append(r)
            streaming = out[0].HasField("dht") and out[0].dht.type == pb.DHTResponse.BEGIN
            if r.type == pb.Response.ERROR or not streaming or (
                    r.HasField("dht") and r.dht.type == pb.DHTResponse.END):
                return out
    finally:
        s.close()


@pytest.fixture(scope="module")
def net():
    with ThreadPoolExecutor(8) as pool:
        ours = list(pool.map(lambda _: Daemon("-dht"), range(N)))
        js = list(pool.map(lambda _: JsKad(), range(N)))
    try:
        hub = js[0]
        for d in ours:
            ControlClient.for_address(d.control, timeout=30).connect(
                _pid(hub.peer_id), [_maddr(hub.addr)])
        for j in js[1:]:
            j.call(cmd="dial", addr=hub.addr)
        first = ours[0]
        first_addr = f"{first.addrs[0]}/p2p/{first.peer_id}"
        for j in js[1:]:
            j.call(cmd="dial", addr=first_addr)
        time.sleep(8)  # our maintenance round, js identify + table updates
        yield ours, js
    finally:
        for d in ours:
            d.stop()
        for j in js:
            j.stop()


def _pid(text: str) -> bytes:
    from p2pd.blocks.multibase import b58decode

    return b58decode(text)


def _maddr(text: str) -> bytes:
    import multiaddr

    ma = multiaddr.Multiaddr(text)
    return ma.decapsulate_code(multiaddr.protocols.P_P2P).to_bytes()


def test_content_provided_by_us_is_found_by_js(net):
    ours, js = net
    cid = CID.for_block(b"provided by p2pd", Codec.RAW)
    [r] = dht(ours[5], type=pb.DHTRequest.PROVIDE, cid=bytes(cid))
    assert r.type == pb.Response.OK, r.error.msg
    found = js[7].call(cmd="findProviders", cid=str(cid), timeout=60000)["providers"]
    assert ours[5].peer_id in found


def test_content_provided_by_js_is_found_by_us(net):
    ours, js = net
    cid = CID.for_block(b"provided by js-libp2p", Codec.RAW)
    js[3].call(cmd="provide", cid=str(cid), timeout=60000)
    replies = dht(ours[8], type=pb.DHTRequest.FIND_PROVIDERS, cid=bytes(cid), count=1)
    found = [r.dht.peer.id for r in replies[1:-1]]
    assert _pid(js[3].peer_id) in found, replies[0].error.msg


def _pk_record(seed: int) -> tuple[bytes, bytes]:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    proto = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return b"/pk/" + bytes([0x00, len(proto)]) + proto, proto


def test_values_put_on_either_side_are_found_on_the_other(net):
    ours, js = net
    key, value = _pk_record(7)
    [r] = dht(ours[2], type=pb.DHTRequest.PUT_VALUE, key=key, value=value)
    assert r.type == pb.Response.OK, r.error.msg
    assert js[4].call(cmd="get", key=key.hex(), timeout=60000)["value"] == value.hex()
    key, value = _pk_record(9)
    js[6].call(cmd="put", key=key.hex(), value=value.hex(), timeout=60000)
    [r] = dht(ours[9], type=pb.DHTRequest.GET_VALUE, key=key)
    assert r.type == pb.Response.OK and r.dht.value == value, r.error.msg


def test_each_side_is_in_the_others_routing_tables(net):
    ours, js = net
    our_ids = {d.peer_id for d in ours}
    js_tables = [set(j.call(cmd="table")["peers"]) for j in js]
    assert sum(bool(t & our_ids) for t in js_tables) >= N // 2
    # Our table: peers enter it only after answering our queries as DHT servers, and
    # GET_CLOSEST_PEERS walks from it; js peers answer among the closest.
    js_ids = {_pid(j.peer_id) for j in js}
    replies = dht(ours[4], type=pb.DHTRequest.GET_CLOSEST_PEERS, key=b"any key at all")
    closest = {r.dht.value for r in replies[1:-1]}
    assert closest & js_ids
