"""Daemons driven through their control sockets, for QUIC interop tests and benchmarks.

:class:`GoPeer` (a :class:`DaemonPeer`; ours runs the same way) starts the go daemon
(hivemind's build, :func:`harness.godaemon.go_daemon_path`) on a private Unix control socket
with the swarm addresses asked for (QUIC v1 on loopback by default) and offers what the tests
need of it in plain blocking calls: identify, connect, disconnect, ping, a stream handler
that echoes or swallows (a Unix socket the daemon connects to for each inbound stream), and
STREAM_OPEN (a socket piped to the new stream). Run the blocking calls from trio with
``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from p2pd.cli.client import ControlClient
from p2pd.control.codec import FrameDecoder, decode_response, encode_message
from p2pd.control.endpoint import parse_endpoint
from p2pd.proto import daemon_pb2 as pb

from .godaemon import go_daemon_path

CHUNK = 1 << 20


def _unix_ma(path: str) -> bytes:
    import multiaddr

    return multiaddr.Multiaddr(f"/unix{path}").to_bytes()


def _read_message(sock: socket.socket, decoder: FrameDecoder, message):
    while (frame := decoder.next_frame()) is None:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the go daemon closed the socket")
        decoder.receive_data(data)
    return frame if message is None else message.FromString(frame)


class ControlPeer:
    """A running daemon (ours or go's, launched by anyone, in any network namespace) driven
    through its Unix control socket ``sock``; handler sockets are made in ``workdir``.

    A go daemon resolves a handler's ``/unix`` address relative to its working directory
    (see :class:`DaemonPeer`): start it in ``/``."""

    def __init__(self, sock: Path, workdir: Path, timeout: float = 60) -> None:
        self.sock = Path(sock)
        self.dir = Path(workdir)
        self.client = ControlClient(parse_endpoint(f"/unix{self.sock}"), timeout=timeout)
        self._servers: list[socket.socket] = []
        self.received: dict[str, int] = {}

    @property
    def control(self) -> str:
        return f"/unix{self.sock}"

    def close(self) -> None:
        """Stop serving the handlers set through this peer."""
        for server in self._servers:
            server.close()
        self._servers.clear()

    # -- control requests -------------------------------------------------------------------
    def connect(self, peer: bytes, addrs: list[bytes]) -> None:
        self.client.connect(peer, addrs, 30)

    def disconnect(self, peer: bytes) -> None:
        self.client.disconnect(peer)

    def ping(self, peer: bytes, count: int) -> list[float]:
        return self.client.ping(peer, count)

    def peers(self) -> list[bytes]:
        return [p.id for p in self.client.list_peers()]

    def handle(self, proto: str, mode: str = "echo") -> None:
        """Serve ``proto`` from a socket of ours: ``echo`` sends every byte back and closes
        after the peer's end; ``sink`` reads to the end, counts into ``received[proto]``
        and answers with the count (8 bytes) before closing."""
        path = str(self.dir / f"h{len(self._servers)}.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(64)
        self._servers.append(server)
        threading.Thread(target=self._accept, args=(server, proto, mode), daemon=True).start()
        request = pb.Request(type=pb.Request.STREAM_HANDLER, streamHandler=pb.StreamHandlerRequest(
            addr=_unix_ma(path), proto=[proto], balanced=False))
        # the fork drops a handler when the control connection that set it closes: keep it
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        s.sendall(encode_message(request))
        response = decode_response(_read_message(s, FrameDecoder(), None))
        self._servers.append(s)
        if response.type != pb.Response.OK:
            raise RuntimeError(f"STREAM_HANDLER refused: {response.error.msg}")

    def _accept(self, server: socket.socket, proto: str, mode: str) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, proto, mode), daemon=True).start()

    def _serve(self, conn: socket.socket, proto: str, mode: str) -> None:
        with conn:
            decoder = FrameDecoder()
            _read_message(conn, decoder, pb.StreamInfo)  # who and what, then the bytes
            rest = decoder.take_unconsumed()
            if mode == "sink":
                while len(rest) < 8 and (data := conn.recv(CHUNK)):
                    rest += data
                want, total = int.from_bytes(rest[:8], "big"), len(rest) - 8
                while total < want and (data := conn.recv(CHUNK)):
                    total += len(data)
                self.received[proto] = self.received.get(proto, 0) + total
                conn.sendall(total.to_bytes(8, "big"))
                # the sender closes first: closing here would end the go daemon's stream
                # (read side too) and could reset it before the count reached the sender
                while conn.recv(CHUNK):
                    pass
                return
            total = len(rest)
            if rest:
                conn.sendall(rest)
            while data := conn.recv(CHUNK):
                total += len(data)
                conn.sendall(data)
            self.received[proto] = self.received.get(proto, 0) + total
            conn.shutdown(socket.SHUT_WR)

    def open_stream(self, peer: bytes, proto: str) -> socket.socket:
        """A socket piped to a new stream to ``peer`` speaking ``proto``."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.sock))
        s.sendall(encode_message(pb.Request(type=pb.Request.STREAM_OPEN,
                                            streamOpen=pb.StreamOpenRequest(
                                                peer=peer, proto=[proto], timeout=30))))
        decoder = FrameDecoder()
        response = decode_response(_read_message(s, decoder, None))
        if response.type != pb.Response.OK:
            s.close()
            raise RuntimeError(f"STREAM_OPEN refused: {response.error.msg}")
        rest = decoder.take_unconsumed()
        if rest:  # bytes of the stream that came with the answer
            s.close()
            raise RuntimeError("unexpected early stream bytes")
        return s


def echo_over(sock: socket.socket, blob: bytes) -> bytes:
    """Send ``blob`` on ``sock`` while reading as many bytes back; close after that. What
    came back is returned, short if the stream ended or was reset first.

    No half-close before the echo is back: the go daemon ends the whole stream when the
    socket piped to it reaches its end (go-libp2p's ``Close`` also stops reading).
    """
    got = bytearray()

    def send() -> None:
        view = memoryview(blob)
        try:
            for i in range(0, len(blob), CHUNK):
                sock.sendall(view[i : i + CHUNK])
        except OSError:  # the stream was reset: the reader sees it too
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        while len(got) < len(blob) and (data := sock.recv(CHUNK)):
            got += data
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a sender still blocked on a dead stream
    except OSError:
        pass
    sender.join()
    sock.close()
    return bytes(got)


class DaemonPeer(ControlPeer):
    """A daemon speaking the control protocol (the go daemon, or ours with ``command``
    ``[python, "-m", "p2pd"]``), started here and driven through its control socket."""

    def __init__(self, command: list[str], host_addrs: str = "/ip4/127.0.0.1/udp/0/quic-v1",
                 *extra: str) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="ctlq-", dir="/tmp"))
        self.proc = subprocess.Popen(
            [*command, "-listen", f"/unix{workdir}/ctl.sock", "-hostAddrs", host_addrs,
             *extra],
            # cwd "/": the daemon reads a handler's /unix address (as python's multiaddr
            # encodes it) without its leading slash, i.e. relative to its working directory
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        self.dir = workdir
        self._servers = []
        deadline = time.monotonic() + 30
        while not (workdir / "ctl.sock").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the go daemon did not start")
            time.sleep(0.02)
        super().__init__(workdir / "ctl.sock", workdir)
        while True:  # the socket file appears a moment before the daemon listens on it
            try:
                self.peer, self.addrs = self.client.identify()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DaemonPeer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class GoPeer(DaemonPeer):
    """The go daemon."""

    def __init__(self, host_addrs: str = "/ip4/127.0.0.1/udp/0/quic-v1", *extra: str) -> None:
        super().__init__([str(go_daemon_path())], host_addrs, *extra)


def send_sized(sock: socket.socket, size: int) -> int:
    """Send an 8-byte size and ``size`` bytes to a ``sink`` handler; its count back."""
    sock.sendall(size.to_bytes(8, "big"))
    block = memoryview(bytes(CHUNK))
    left = size
    while left:
        n = min(left, CHUNK)
        sock.sendall(block[:n])
        left -= n
    answer = b""
    while len(answer) < 8 and (data := sock.recv(8 - len(answer))):
        answer += data
    sock.close()
    return int.from_bytes(answer, "big") if len(answer) == 8 else -1
