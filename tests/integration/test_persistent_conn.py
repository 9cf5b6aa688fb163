"""The hivemind fork's control protocol: persistent connections, unary calls, balanced and
removable handlers, ``-idleTimeout``, ``-persistentConnMaxMsgSize``.

The client is :mod:`persistent_client` (what hivemind's ControlClient sends). Tests that
state the fork's behaviour run against our daemon, against the go daemon (hivemind's
binary, tests/harness/godaemon.py) and across the two, so a unary call travels between
a p2pd and a go daemon both ways; tests of what we do better than the fork (a too-big
message answered instead of the connection dropped, a vanished handler client answered
with an error) run against ours only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import base58
import pytest
import trio
from multiaddr import Multiaddr
from persistent_client import (
    DaemonError,
    HandlerError,
    PersistentClient,
    connect,
    read_message,
    request,
)

from p2pd.control.codec import FrameDecoder, encode_frame, encode_message
from p2pd.proto import daemon_pb2 as pb
from p2pd.varint import encode_uvarint

ECHO = "/p2pd-test/unary-echo/1.0.0"
READY_TIMEOUT = 30.0


def _go_binary() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.godaemon import go_daemon_path

    return str(go_daemon_path())


class Launched:
    """Our daemon (``ours``) or the go daemon (``go``), started with the same go flags."""

    def __init__(self, kind: str, *flags: str, home_config: str | None = None) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix=f"pc-{kind}-", dir="/tmp"))
        env = dict(os.environ, P2PD_HOME=str(self.dir / "home"))
        if kind == "go":
            cmd = [_go_binary()]
        else:
            cmd = [sys.executable, "-m", "p2pd"]
        if home_config is None:  # harness mode
            self.control = f"/unix{self.dir}/ctl.sock"
            cmd += ["-listen", self.control]
        else:  # home mode: the config sets limits no flag reaches
            (self.dir / "home").mkdir()
            (self.dir / "home" / "config.toml").write_text(home_config)
            self.control = f"/unix{self.dir}/home/p2pd.sock"
        cmd += ["-hostAddrs", "/ip4/127.0.0.1/tcp/0", *flags]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.dir,
        )
        lines: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT
        while len(lines) < 4:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                err = self.proc.stderr.read()
                raise RuntimeError(f"{kind} daemon did not start: {lines} {err}")
            lines.append(line.rstrip("\n"))
        self.peer_id = lines[1].split(": ", 1)[1]
        self.peer = base58.b58decode(self.peer_id)
        self.addr = Multiaddr(lines[3]).to_bytes()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture(scope="module")
def our_daemons():
    made: dict[str, Launched] = {}
    try:
        yield made
    finally:
        for d in made.values():
            d.stop()


@pytest.fixture
def daemons(our_daemons):
    """``daemons(name)``: ours are shared by the module; go daemons are fresh per test,
    because the fork's daemon exits once its last persistent connection closes (with or
    without ``-idleTimeout``: ``terminateWG`` in its persistent_stream.go)."""
    fresh: dict[str, Launched] = {}

    def get(name: str) -> Launched:
        kind = name.split("-")[0]
        made = fresh if kind == "go" else our_daemons
        if name not in made:
            made[name] = Launched(kind)
        return made[name]

    try:
        yield get
    finally:
        for d in fresh.values():
            d.stop()


PAIRS = [("ours", "ours-2"), ("go", "go-2"), ("ours", "go"), ("go", "ours")]


@pytest.fixture(params=PAIRS, ids=["ours-ours", "go-go", "ours-go", "go-ours"])
def pair(request, daemons):
    a, b = (daemons(n) for n in request.param)
    return a, b


@pytest.fixture(params=["ours", "go"])
def one(request, daemons):
    return daemons(request.param)


async def connect_daemons(a: Launched, b: Launched) -> None:
    resp = await request(
        a.control,
        pb.Request(type=pb.Request.CONNECT, connect=pb.ConnectRequest(peer=b.peer, addrs=[b.addr])),
    )
    assert resp.type == pb.Response.OK, resp


def fresh_proto() -> str:
    return f"/p2pd-test/unary/{uuid.uuid4().hex[:8]}"


class Clients:
    """Open persistent clients and run their readers in one nursery."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.open: list[PersistentClient] = []

    async def __call__(self, d: Launched, **kw) -> PersistentClient:
        client = await PersistentClient.open(d.control, **kw)
        await self.nursery.start(client.run)
        self.open.append(client)
        return client


async def with_clients(fn) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            clients = Clients(nursery)
            try:
                await fn(clients)
            finally:
                for c in clients.open:
                    await c.aclose()
                nursery.cancel_scope.cancel()


# -- the fork's behaviour: ours, go, and across ------------------------------------------


async def test_concurrent_unary_calls_on_one_connection_each_get_their_own_answer(pair):
    a, b = pair
    proto = fresh_proto()
    in_flight = 0
    most = 0
    all_in = trio.Event()
    n = 12

    async def slow_echo(data: bytes, caller: bytes) -> bytes:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == n:
            all_in.set()
        with trio.move_on_after(5):
            await all_in.wait()
        in_flight -= 1
        return data + b"|" + caller

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, slow_echo)
        await connect_daemons(a, b)
        results: dict[int, bytes] = {}

        async def one_call(i: int) -> None:
            results[i] = await ca.call(b.peer, proto, b"call-%d" % i)

        async with trio.open_nursery() as calls:
            for i in range(n):
                calls.start_soon(one_call, i)
        assert results == {i: b"call-%d|" % i + a.peer for i in range(n)}
        assert most == n  # all were with the handler at once
        assert ca.unexpected == []  # answered once each

    await with_clients(body)


async def test_a_handler_error_is_carried_back_to_the_caller(pair):
    a, b = pair
    proto = fresh_proto()

    async def failing(data: bytes, caller: bytes) -> bytes:
        raise ValueError("the handler refuses " + data.decode())

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, failing)
        await connect_daemons(a, b)
        with pytest.raises(HandlerError, match="the handler refuses this"):
            await ca.call(b.peer, proto, b"this")
        with pytest.raises(HandlerError, match="the handler refuses that"):  # and again
            await ca.call(b.peer, proto, b"that")

    await with_clients(body)


async def test_a_call_to_a_protocol_nobody_serves_is_a_daemon_error(pair):
    a, b = pair

    async def body(clients: Clients) -> None:
        ca = await clients(a)
        await connect_daemons(a, b)
        with pytest.raises(DaemonError):
            await ca.call(b.peer, fresh_proto(), b"x")
        with pytest.raises(DaemonError):  # no such peer at all
            await ca.call(b"\x00\x24\x08\x01\x12\x20" + bytes(32), fresh_proto(), b"x")

    await with_clients(body)


async def test_the_callers_cancel_on_its_deadline_cancels_the_remote_handler(pair):
    """A handler that never answers: the caller gives up (hivemind's wait_for sends cancel),
    the daemon confirms with cancel, and the handler's client is told to stop."""
    a, b = pair
    proto = fresh_proto()
    started = trio.Event()

    async def never(data: bytes, caller: bytes) -> bytes:
        started.set()
        await trio.sleep_forever()

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, never)
        await connect_daemons(a, b)
        with pytest.raises(TimeoutError):
            await ca.call(b.peer, proto, b"x", timeout=1.0)
        assert started.is_set()
        with trio.fail_after(10):
            await cb.cancel_seen.wait()
        assert len(cb.cancelled) == 1

    await with_clients(body)


@pytest.mark.parametrize(
    "names", [("ours", "ours-2"), ("ours", "go")], ids=["ours-ours", "ours-go"]
)
async def test_a_caller_vanishing_mid_call_cancels_the_remote_handler(daemons, names):
    """The go daemon keeps such a call running (its calls end only on an explicit cancel),
    so the caller's daemon here is ours; the handler's is ours or go."""
    a, b = (daemons(n) for n in names)
    proto = fresh_proto()
    started = trio.Event()

    async def never(data: bytes, caller: bytes) -> bytes:
        started.set()
        await trio.sleep_forever()

    async def echo(data: bytes, caller: bytes) -> bytes:
        return data

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)  # ca keeps a go daemon alive
        await cb.add_unary_handler(proto, never)
        await cb.add_unary_handler(proto + "/echo", echo)
        await connect_daemons(a, b)
        leaving = await PersistentClient.open(a.control)
        await leaving.send(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                callUnary=pb.CallUnaryRequest(peer=b.peer, proto=proto, data=b"x"),
            )
        )
        await started.wait()
        await leaving.aclose()  # gone without a cancel
        with trio.fail_after(10):
            await cb.cancel_seen.wait()
        assert await ca.call(b.peer, proto + "/echo", b"still here") == b"still here"

    await with_clients(body)


async def test_a_second_unbalanced_unary_handler_is_refused_and_balanced_ones_share_calls(pair):
    a, b = pair
    proto = fresh_proto()
    served: list[str] = []

    def named(name: str):
        async def handler(data: bytes, caller: bytes) -> bytes:
            served.append(name)
            return name.encode()

        return handler

    async def body(clients: Clients) -> None:
        ca = await clients(a)
        b1, b2, b3 = await clients(b), await clients(b), await clients(b)
        await b1.add_unary_handler(proto, named("one"))
        with pytest.raises(DaemonError, match=f"^handler for protocol {proto} already set$"):
            await b2.add_unary_handler(proto, named("two"))
        await b2.add_unary_handler(proto, named("two"), balanced=True)
        await b3.add_unary_handler(proto, named("three"), balanced=True)
        await connect_daemons(a, b)
        for _ in range(9):
            await ca.call(b.peer, proto, b"x")
        assert sorted(served) == ["one"] * 3 + ["three"] * 3 + ["two"] * 3
        for i in range(0, 9, 3):  # in turn
            assert sorted(served[i : i + 3]) == ["one", "three", "two"]

    await with_clients(body)


async def test_removing_a_unary_handler(pair):
    a, b = pair
    proto = fresh_proto()

    async def echo(data: bytes, caller: bytes) -> bytes:
        return data

    async def body(clients: Clients) -> None:
        ca, cb, other = await clients(a), await clients(b), await clients(b)
        await cb.add_unary_handler(proto, echo)
        await connect_daemons(a, b)
        assert await ca.call(b.peer, proto, b"1") == b"1"
        with pytest.raises(
            DaemonError,
            match=(f"^handler for protocol {proto} was not created in this persistent connection$"),
        ):
            await other.remove_unary_handler(proto)
        await cb.remove_unary_handler(proto)
        with pytest.raises(DaemonError, match=f"^handler for protocol {proto} does not exist$"):
            await cb.remove_unary_handler(proto)
        with pytest.raises(DaemonError):
            await ca.call(b.peer, proto, b"2")
        await other.add_unary_handler(proto, echo)  # free again
        assert await ca.call(b.peer, proto, b"3") == b"3"

    await with_clients(body)


async def test_a_closed_connection_gives_up_its_unary_handlers(pair):
    a, b = pair
    proto = fresh_proto()

    async def echo(data: bytes, caller: bytes) -> bytes:
        return data

    async def body(clients: Clients) -> None:
        cb = await clients(b)  # keeps a go daemon alive when first closes
        first = await PersistentClient.open(b.control)
        await first.send(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                addUnaryHandler=pb.AddUnaryHandlerRequest(proto=proto, balanced=False),
            )
        )
        assert (await first.receive()).WhichOneof("message") is None
        await first.aclose()
        with trio.fail_after(10):
            while True:  # the daemon notices the close
                try:
                    await cb.add_unary_handler(proto, echo)
                    break
                except DaemonError:
                    await trio.sleep(0.05)
        ca = await clients(a)
        await connect_daemons(a, b)
        assert await ca.call(b.peer, proto, b"ok") == b"ok"

    await with_clients(body)


async def test_type_9_without_payload_upgrades_and_the_upgrade_answers_ok(one):
    stream = await connect(one.control)
    try:
        await stream.send_all(encode_message(pb.Request(type=pb.Request.PERSISTENT_CONN_UPGRADE)))
        resp = await read_message(stream, FrameDecoder(1 << 20), pb.Response())
        assert resp.type == pb.Response.OK
        assert not resp.HasField("error")
    finally:
        await stream.aclose()


# -- stream handlers: balanced, "already set", REMOVE_STREAM_HANDLER ---------------------


def unix_multiaddr(path: str) -> bytes:
    """``/unix/PATH`` as go-multiaddr and hivemind encode it: the path with its leading
    slash (py-multiaddr 0.2 drops the slash, and the go daemon then dials a relative path)."""
    raw = path.encode()
    return b"\x90\x03" + encode_uvarint(len(raw)) + raw


class HandlerSocket:
    """A Unix socket a STREAM_HANDLER points at; counts the streams handed to it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.addr = unix_multiaddr(path)
        self.streams = 0

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(self.path)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        async with listener:
            while True:
                conn = await listener.accept()
                async with conn:
                    decoder = FrameDecoder(1 << 16)
                    info = await read_message(conn, decoder, pb.StreamInfo())
                    assert info.proto
                    got = decoder.take_unconsumed()
                    while len(got) < 4:  # "ping"; the go daemon closes the handler
                        got += await conn.receive_some(4)  # socket at the stream's EOF,
                    self.streams += 1  # so answer before waiting for it
                    await conn.send_all(REPLY_PREFIX + self.path.encode()[-6:])
                    while await conn.receive_some(1024):
                        pass


REPLY_PREFIX = b"handled-by-"
REPLY_LEN = len(REPLY_PREFIX) + 6


def stream_handler_request(proto: str, addr: bytes, balanced: bool | None) -> pb.Request:
    sh = pb.StreamHandlerRequest(addr=addr, proto=[proto])
    if balanced is not None:
        sh.balanced = balanced
    return pb.Request(type=pb.Request.STREAM_HANDLER, streamHandler=sh)


def remove_stream_handler_frame(proto: str, addr: bytes) -> bytes:
    """The fork's type-10 request: RemoveStreamHandlerRequest in field 9."""
    return pb.RemoveStreamHandlerFrame(
        type=pb.Request.REMOVE_STREAM_HANDLER,
        removeStreamHandler=pb.RemoveStreamHandlerRequest(addr=addr, proto=[proto]),
    ).SerializeToString()


async def raw_request(control: str, frame: bytes) -> pb.Response:
    stream = await connect(control)
    try:
        await stream.send_all(encode_frame(frame))
        return await read_message(stream, FrameDecoder(1 << 20), pb.Response())
    finally:
        await stream.aclose()


async def open_and_read(a: Launched, b: Launched, proto: str) -> bytes:
    """Open a stream from a to b's handler, send "ping", read the handler's reply."""
    resp_stream = await connect(a.control)
    try:
        await resp_stream.send_all(
            encode_message(
                pb.Request(
                    type=pb.Request.STREAM_OPEN,
                    streamOpen=pb.StreamOpenRequest(peer=b.peer, proto=[proto]),
                )
            )
        )
        decoder = FrameDecoder(1 << 20)
        resp = await read_message(resp_stream, decoder, pb.Response())
        assert resp.type == pb.Response.OK, resp
        await resp_stream.send_all(b"ping")
        data = decoder.take_unconsumed()
        while len(data) < REPLY_LEN:
            more = await resp_stream.receive_some(1024)
            assert more, f"stream ended after {data!r}"
            data += more
        return data
    finally:
        await resp_stream.aclose()


async def test_balanced_stream_handlers_share_streams_and_an_unbalanced_second_is_refused(pair):
    a, b = pair
    proto = fresh_proto()
    tmp = Path(tempfile.mkdtemp(prefix="pc-h", dir="/tmp"))
    h1, h2 = (HandlerSocket(str(tmp / f"h{i}.sock")) for i in (1, 2))
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for h in (h1, h2):
                    await nursery.start(h.serve)
                resp = await request(b.control, stream_handler_request(proto, h1.addr, False))
                assert resp.type == pb.Response.OK, resp
                for again in (h2, h1):  # another endpoint, or the same one again
                    resp = await request(
                        b.control, stream_handler_request(proto, again.addr, False)
                    )
                    assert resp.type == pb.Response.ERROR
                    assert resp.error.msg == f"handler for protocol {proto} already set"
                resp = await request(b.control, stream_handler_request(proto, h2.addr, True))
                assert resp.type == pb.Response.OK, resp
                await connect_daemons(a, b)
                for _ in range(6):
                    assert (await open_and_read(a, b, proto)).startswith(b"handled-by-")
                assert (h1.streams, h2.streams) == (3, 3)
                # REMOVE_STREAM_HANDLER takes h1 out of the turn
                resp = await raw_request(b.control, remove_stream_handler_frame(proto, h1.addr))
                assert resp.type == pb.Response.OK, resp
                for _ in range(2):
                    await open_and_read(a, b, proto)
                assert (h1.streams, h2.streams) == (3, 5)
                resp = await raw_request(b.control, remove_stream_handler_frame(proto, h1.addr))
                assert resp.type == pb.Response.ERROR
                assert resp.error.msg == (
                    f"handler for protocol {proto} with maddr /unix{h1.path} does not exist"
                )
                resp = await raw_request(b.control, remove_stream_handler_frame(proto, h2.addr))
                assert resp.type == pb.Response.OK, resp
                resp = await raw_request(b.control, remove_stream_handler_frame(proto, h2.addr))
                assert resp.error.msg == f"handler for protocol {proto} does not exist"
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_a_stream_handler_request_without_balanced_is_accepted_by_ours(daemons):
    """p2pclient 0.3 sends no ``balanced`` (the fork makes it required; we do not)."""
    ours = daemons("ours")
    proto = fresh_proto()
    tmp = Path(tempfile.mkdtemp(prefix="pc-h", dir="/tmp"))
    try:
        h = HandlerSocket(str(tmp / "h.sock"))
        async with trio.open_nursery() as nursery:
            await nursery.start(h.serve)
            resp = await request(ours.control, stream_handler_request(proto, h.addr, None))
            assert resp.type == pb.Response.OK, resp
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_a_dead_handler_is_replaced_by_a_new_unbalanced_one_on_ours(daemons):
    """Upstream p2pclient users re-register after their listener closed: ours lets them,
    refusing only while the old handler still listens."""
    ours = daemons("ours")
    proto = fresh_proto()
    tmp = Path(tempfile.mkdtemp(prefix="pc-h", dir="/tmp"))
    try:
        old, new = HandlerSocket(str(tmp / "old.sock")), HandlerSocket(str(tmp / "new.sock"))
        async with trio.open_nursery() as nursery:
            inner = trio.CancelScope()

            async def serve_old(task_status=trio.TASK_STATUS_IGNORED):
                with inner:
                    await old.serve(task_status=task_status)

            await nursery.start(serve_old)
            await nursery.start(new.serve)
            assert (
                await request(ours.control, stream_handler_request(proto, old.addr, None))
            ).type == pb.Response.OK
            resp = await request(ours.control, stream_handler_request(proto, new.addr, None))
            assert resp.error.msg == f"handler for protocol {proto} already set"
            inner.cancel()
            await trio.sleep(0)
            os.unlink(old.path)
            resp = await request(ours.control, stream_handler_request(proto, new.addr, None))
            assert resp.type == pb.Response.OK, resp
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_type_9_with_a_peerstore_payload_is_still_peerstore_on_ours(daemons):
    ours = daemons("ours")
    resp = await request(
        ours.control,
        pb.Request(
            type=pb.Request.PEERSTORE,
            peerStore=pb.PeerstoreRequest(type=pb.PeerstoreRequest.GET_PROTOCOLS, id=ours.peer),
        ),
    )
    assert resp.type == pb.Response.OK, resp
    assert resp.HasField("peerStore")


# -- bad input and limits: ours ---------------------------------------------------------


async def test_garbage_on_a_persistent_connection_gets_an_error_and_the_connection_goes_on(daemons):
    a, b = daemons("ours"), daemons("ours-2")
    proto = fresh_proto()

    async def echo(data: bytes, caller: bytes) -> bytes:
        return data

    async def body(clients: Clients) -> None:
        cb = await clients(b)
        await cb.add_unary_handler(proto, echo)
        await connect_daemons(a, b)
        raw = await PersistentClient.open(a.control)
        try:
            await raw.send_raw(b"\xff\xff\xff")  # not a protobuf
            resp = await raw.receive()
            assert resp.callId == bytes(16)
            assert "not a valid PersistentConnectionRequest" in resp.daemonError.message
            await raw.send(pb.PersistentConnectionRequest(callId=b"short", cancel=pb.Cancel()))
            resp = await raw.receive()
            assert "callId must be 16 bytes" in resp.daemonError.message
            call_id = uuid.uuid4().bytes
            await raw.send(pb.PersistentConnectionRequest(callId=call_id))
            resp = await raw.receive()
            assert resp.callId == call_id and "names no message" in resp.daemonError.message
            await raw.send(
                pb.PersistentConnectionRequest(
                    callId=call_id,
                    callUnary=pb.CallUnaryRequest(peer=b.peer, proto=proto, data=b"fine"),
                )
            )
            resp = await raw.receive()
            assert resp.callId == call_id and resp.callUnaryResponse.response == b"fine"
            # a broken length prefix loses the framing: an error, then the daemon hangs up
            await raw.stream.send_all(b"\xff" * 10)
            resp = await raw.receive()
            assert "length prefix" in resp.daemonError.message
            with pytest.raises(EOFError):
                await raw.receive()
        finally:
            await raw.aclose()

    await with_clients(body)


async def test_a_call_id_reused_while_in_flight_is_refused(daemons):
    a, b = daemons("ours"), daemons("ours-2")
    proto = fresh_proto()
    release = trio.Event()

    async def wait(data: bytes, caller: bytes) -> bytes:
        await release.wait()
        return data

    async def body(clients: Clients) -> None:
        cb = await clients(b)
        await cb.add_unary_handler(proto, wait)
        await connect_daemons(a, b)
        raw = await PersistentClient.open(a.control)
        try:
            call_id = uuid.uuid4().bytes
            call = pb.PersistentConnectionRequest(
                callId=call_id,
                callUnary=pb.CallUnaryRequest(peer=b.peer, proto=proto, data=b"first"),
            )
            await raw.send(call)
            await raw.send(call)
            resp = await raw.receive()
            assert resp.callId == call_id
            assert "already in use by a call in flight" in resp.daemonError.message
            release.set()
            resp = await raw.receive()
            assert resp.callUnaryResponse.response == b"first"
            await raw.send(call)  # done: the id is free again
            assert (await raw.receive()).callUnaryResponse.response == b"first"
        finally:
            await raw.aclose()

    await with_clients(body)


@pytest.fixture(scope="module")
def small():
    """Two of ours with a 64 KiB message limit."""
    a = Launched("ours", "-persistentConnMaxMsgSize=65536")
    b = Launched("ours", "-persistentConnMaxMsgSize=65536")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


async def test_a_request_over_the_size_limit_is_refused_and_the_connection_survives(small):
    a, b = small
    proto = fresh_proto()

    async def echo(data: bytes, caller: bytes) -> bytes:
        return data

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, echo)
        await connect_daemons(a, b)
        with pytest.raises(
            DaemonError, match="exceeds the persistent connection limit of 65536 bytes"
        ):
            await ca.call(b.peer, proto, os.urandom(100_000))
        assert await ca.call(b.peer, proto, b"small") == b"small"

    await with_clients(body)


async def test_a_response_over_the_size_limit_is_a_clear_error_and_both_connections_survive(small):
    a, b = small
    proto = fresh_proto()

    async def big(data: bytes, caller: bytes) -> bytes:
        return os.urandom(100_000) if data == b"big" else data

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, big)
        await connect_daemons(a, b)
        with pytest.raises(HandlerError, match="exceeds the persistent connection limit"):
            await ca.call(b.peer, proto, b"big")
        assert any("exceeds" in r.daemonError.message for r in cb.unexpected)  # told too
        assert await ca.call(b.peer, proto, b"small") == b"small"

    await with_clients(body)


async def test_a_remote_answer_over_the_callers_limit_is_a_clear_error(small, daemons):
    a, _ = small  # 64 KiB
    b = daemons("ours")  # 4 MiB
    proto = fresh_proto()

    async def big(data: bytes, caller: bytes) -> bytes:
        return os.urandom(200_000)

    async def body(clients: Clients) -> None:
        ca, cb = await clients(a), await clients(b)
        await cb.add_unary_handler(proto, big)
        await connect_daemons(a, b)
        with pytest.raises(DaemonError, match="exceeds the limit of 65536 bytes"):
            await ca.call(b.peer, proto, b"x")

    await with_clients(body)


async def test_a_handler_client_vanishing_mid_call_answers_the_caller_with_an_error(daemons):
    a, b = daemons("ours"), daemons("ours-2")
    proto = fresh_proto()

    async def body(clients: Clients) -> None:
        ca = await clients(a)
        handler = await PersistentClient.open(b.control)
        await handler.send(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                addUnaryHandler=pb.AddUnaryHandlerRequest(proto=proto, balanced=False),
            )
        )
        assert (await handler.receive()).WhichOneof("message") is None
        await connect_daemons(a, b)
        async with trio.open_nursery() as nursery:
            outcome = []

            async def call():
                try:
                    await ca.call(b.peer, proto, b"x")
                except HandlerError as exc:
                    outcome.append(str(exc))

            nursery.start_soon(call)
            assert (await handler.receive()).HasField("requestHandling")
            await handler.aclose()
        assert outcome == ["the handler's client disconnected"]

    await with_clients(body)


async def test_a_persistent_connection_has_no_idle_timeout(tmp_path):
    """The control socket drops a silent plain client after limits.control_idle_timeout;
    a persistent connection stays however long it is quiet."""
    d = Launched("ours", home_config='[limits]\ncontrol_idle_timeout = "1s"\n')
    try:
        plain = await connect(d.control)
        persistent = await PersistentClient.open(d.control)
        with trio.fail_after(10):
            resp = await read_message(plain, FrameDecoder(1 << 16), pb.Response())
        assert "no request within 1 s" in resp.error.msg
        await trio.sleep(1.5)
        call_id = uuid.uuid4().bytes
        await persistent.send(
            pb.PersistentConnectionRequest(
                callId=call_id, removeUnaryHandler=pb.RemoveUnaryHandlerRequest(proto="/none")
            )
        )
        with trio.fail_after(10):
            resp = await persistent.receive()
        assert resp.callId == call_id and "does not exist" in resp.daemonError.message
        await persistent.aclose()
        await plain.aclose()
    finally:
        d.stop()


# -- -idleTimeout ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ours", "go"])
async def test_idle_timeout_exits_when_no_persistent_connection_opens_in_time(kind):
    d = Launched(kind, "-idleTimeout=1s")
    try:
        with trio.fail_after(20):
            while d.proc.poll() is None:
                await trio.sleep(0.05)
        waited = time.monotonic() - d.started
        assert d.proc.returncode == 0
        assert waited >= 1.0
    finally:
        d.stop()


@pytest.mark.parametrize("kind", ["ours", "go"])
async def test_idle_timeout_waits_while_a_persistent_connection_is_open_and_exits_after(kind):
    d = Launched(kind, "-idleTimeout=2s")
    try:
        client = await PersistentClient.open(d.control)
        await trio.sleep(3)  # past the timeout: the open connection keeps it alive
        assert d.proc.poll() is None
        resp = await request(d.control, pb.Request(type=pb.Request.IDENTIFY))
        assert resp.identify.id == d.peer
        await client.aclose()
        with trio.fail_after(20):
            while d.proc.poll() is None:
                await trio.sleep(0.05)
        assert d.proc.returncode == 0
    finally:
        d.stop()


async def test_idle_timeout_restarts_when_a_new_persistent_connection_opens_in_time():
    d = Launched("ours", "-idleTimeout=2s")
    try:
        first = await PersistentClient.open(d.control)
        await first.aclose()
        await trio.sleep(1)
        second = await PersistentClient.open(d.control)  # within the grace
        await trio.sleep(2.5)
        assert d.proc.poll() is None
        await second.aclose()
        with trio.fail_after(20):
            while d.proc.poll() is None:
                await trio.sleep(0.05)
        assert d.proc.returncode == 0
        assert not os.path.exists(d.control[len("/unix") :])  # cleaned up as on SIGTERM
    finally:
        d.stop()


# -- CONNECT with a peer id alone ------------------------------------------------------


@pytest.mark.parametrize("kind", ["ours", "go"])
async def test_connect_with_a_peer_id_alone_finds_the_peer_through_the_dht(kind):
    """hivemind's is_identity_taken: CONNECT(peer, no addrs) must dial a peer only the DHT
    knows (a third daemon, connected to the middle one only)."""
    a, b, c = (Launched(kind, "-dhtServer") for _ in range(3))
    try:
        await connect_daemons(a, b)
        await connect_daemons(c, b)
        find_c = pb.Request(
            type=pb.Request.CONNECT, connect=pb.ConnectRequest(peer=c.peer, timeout=10)
        )
        with trio.fail_after(60):
            while (resp := await request(a.control, find_c)).type != pb.Response.OK:
                await trio.sleep(0.2)  # the routing tables fill once identify has run
        peers = await request(a.control, pb.Request(type=pb.Request.LIST_PEERS))
        assert c.peer in [p.id for p in peers.peers]
        nobody = b"\x00\x24\x08\x01\x12\x20" + bytes(31) + b"\x01"
        with trio.fail_after(60):
            resp = await request(
                a.control,
                pb.Request(
                    type=pb.Request.CONNECT, connect=pb.ConnectRequest(peer=nobody, timeout=5)
                ),
            )
        assert resp.type == pb.Response.ERROR
    finally:
        for d in (a, b, c):
            d.stop()


async def test_a_call_without_data_reaches_the_handler_with_every_field_the_fork_requires(
    daemons,
):
    """hivemind parses requestHandling with the fork's proto2 ``required`` fields: a
    missing ``data`` would make its reader fail, so the daemon always sets it."""
    a, b = daemons("ours"), daemons("ours-2")
    proto = fresh_proto()
    handler = await PersistentClient.open(b.control)
    caller = await PersistentClient.open(a.control)
    try:
        await handler.send(
            pb.PersistentConnectionRequest(
                callId=uuid.uuid4().bytes,
                addUnaryHandler=pb.AddUnaryHandlerRequest(proto=proto, balanced=False),
            )
        )
        assert (await handler.receive()).WhichOneof("message") is None
        await connect_daemons(a, b)
        call_id = uuid.uuid4().bytes
        await caller.send(
            pb.PersistentConnectionRequest(
                callId=call_id, callUnary=pb.CallUnaryRequest(peer=b.peer, proto=proto)
            )
        )
        with trio.fail_after(10):
            got = await handler.receive()
        req = got.requestHandling
        assert got.callId == call_id
        assert req.HasField("data") and req.HasField("peer") and req.HasField("proto")
        assert (req.peer, req.proto, req.data) == (a.peer, proto, b"")
    finally:
        await handler.aclose()
        await caller.aclose()


@pytest.mark.parametrize(
    "names", [("ours", "ours-2"), ("go", "ours")], ids=["ours-ours", "go-ours"]
)
async def test_a_stream_to_a_handler_that_stopped_listening_opens_and_ends(daemons, names):
    """As on the go daemon with its lazy opener: STREAM_OPEN succeeds and the stream ends
    at once (hivemind's test_handlers_on_different_replicas relies on it)."""
    a, b = (daemons(n) for n in names)
    proto = fresh_proto()
    tmp = Path(tempfile.mkdtemp(prefix="pc-h", dir="/tmp"))
    try:
        path = str(tmp / "gone.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(1)
        resp = await request(b.control, stream_handler_request(proto, unix_multiaddr(path), False))
        assert resp.type == pb.Response.OK, resp
        sock.close()
        os.unlink(path)
        await connect_daemons(a, b)
        for _ in range(40):
            stream = await connect(a.control)
            try:
                await stream.send_all(
                    encode_message(
                        pb.Request(
                            type=pb.Request.STREAM_OPEN,
                            streamOpen=pb.StreamOpenRequest(peer=b.peer, proto=[proto]),
                        )
                    )
                )
                decoder = FrameDecoder(1 << 20)
                with trio.fail_after(10):
                    resp = await read_message(stream, decoder, pb.Response())
                    assert resp.type == pb.Response.OK, resp
                    assert decoder.take_unconsumed() == b""
                    assert await stream.receive_some(1024) == b""
            finally:
                await stream.aclose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
