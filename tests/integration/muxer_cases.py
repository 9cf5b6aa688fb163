"""Our Yamux and mplex muxers and Noise channel over real sockets (a socketpair), against
each other and against a hand-driven peer that sends whatever frames a test needs.

Run by test_muxers.py in a process of its own: this module imports py-libp2p, which cannot
share a process with p2pclient (both register ``crypto.pb.KeyType``)."""

import os

import pytest
import trio

from p2pd.net.channel import SecureChannel
from p2pd.net.mplex import MplexConnection
from p2pd.net.mplex_wire import (
    CLOSE_INITIATOR,
    MESSAGE_INITIATOR,
    NEW_STREAM,
    MplexDecoder,
    frame,
)
from p2pd.net.muxerrors import (
    MuxedConnUnavailable,
    MuxedStreamClosed,
    MuxedStreamEOF,
    MuxedStreamReset,
)
from p2pd.net.noise_xx import Result
from p2pd.net.yamux import YamuxConnection
from p2pd.net.yamux_wire import (
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    GO_AWAY_PROTOCOL_ERROR,
    INITIAL_WINDOW,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YamuxDecoder,
    header,
)

K1, K2 = os.urandom(32), os.urandom(32)


class Raw:
    """A raw connection as py-libp2p's TCP one behaves: read(n) gives up to n, b"" at EOF."""

    def __init__(self, sock) -> None:
        self.stream = trio.SocketStream(sock)
        self.closed = False

    async def read(self, n=None):
        try:
            return await self.stream.receive_some(n)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return b""

    async def write(self, data):
        await self.stream.send_all(data)

    async def close(self):
        self.closed = True
        await self.stream.aclose()

    def get_remote_address(self):
        return ("127.0.0.1", 1)


def channels():
    a, b = trio.socket.socketpair()
    return (SecureChannel(Raw(a), Result(b"", b"", [], K1, K2), is_initiator=True),
            SecureChannel(Raw(b), Result(b"", b"", [], K2, K1), is_initiator=False))


class Peer:
    """The other end driven by hand: Noise-sealed raw Yamux frames."""

    def __init__(self, channel: SecureChannel) -> None:
        self.channel = channel
        self.decoder = YamuxDecoder(1 << 30)
        self.frames: list = []

    async def send(self, *frames: bytes) -> None:
        await self.channel.write(b"".join(frames))

    async def expect(self, typ: int, flags: int = 0, timeout: float = 5.0):
        """The first frame of type ``typ`` carrying all of ``flags``."""
        with trio.fail_after(timeout):
            while True:
                for i, frame in enumerate(self.frames):
                    if frame[0] == typ and frame[1] & flags == flags:
                        return self.frames.pop(i)
                try:
                    data = await self.channel.read()
                except Exception:
                    data = b""
                if not data:
                    raise EOFError("connection closed")
                self.frames += self.decoder.feed(data)


async def running(nursery, *conns):
    """Start the connections' reader tasks; the connections, once started."""
    for conn in conns:
        nursery.start_soon(conn.start)
        await conn.event_started.wait()
    return conns


async def connected(nursery, muxer, **listener_options):
    """Two of our connections of class ``muxer`` over one socketpair, running."""
    ca, cb = channels()
    return await running(nursery, muxer(ca, "b"), muxer(cb, "a", **listener_options))


@pytest.fixture
async def pair(nursery):
    a, b = await connected(nursery, YamuxConnection)
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def ours_and_peer(nursery):
    """Our connection as the listener (even ids), the hand-driven peer as the dialer."""
    ca, cb = channels()
    (ours,) = await running(nursery, YamuxConnection(cb, "peer"))
    yield ours, Peer(ca)
    await ours.close()


async def read_all(stream) -> bytes:
    out = bytearray()
    while True:
        try:
            out += await stream.read()
        except MuxedStreamEOF:
            return bytes(out)


async def test_many_streams_both_ways_arrive_intact(pair, nursery):
    a, b = pair
    results = {}

    async def echo_server():
        async with trio.open_nursery() as n:
            for _ in range(20):
                s = await b.accept_stream()

                async def echo(s=s):
                    await s.write(await read_all(s))
                    await s.close()
                n.start_soon(echo)

    async def client(i):
        s = await a.open_stream()
        data = os.urandom(1000 * i + 1) * (i + 1)
        await s.write(data)
        await s.close()
        results[i] = (await read_all(s)) == data

    nursery.start_soon(echo_server)
    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(client, i)
    assert results == {i: True for i in range(20)}
    assert a.streams == {} and b.streams == {}  # both sides closed: forgotten


async def test_bulk_transfer_grows_the_window_and_keeps_every_byte(pair, nursery):
    a, b = pair
    s = await a.open_stream()
    data = os.urandom(1 << 20) * 24
    nursery.start_soon(lambda: s.write(data))
    r = await b.accept_stream()
    got = bytearray()
    while len(got) < 2 * INITIAL_WINDOW:
        await trio.sleep(0.05)  # a slow reader: the sender waits on the window
        got += await r.read()
    assert r._window_size > INITIAL_WINDOW
    while len(got) < len(data):
        got += await r.read()
    assert bytes(got) == data
    assert INITIAL_WINDOW < r._window_size <= b.max_window


async def test_the_window_grows_when_half_of_it_takes_less_than_four_round_trips(pair, nursery):
    a, b = pair
    b.rtt = 1.0  # a long link: every credit comes within four round trips
    s = await a.open_stream()
    nursery.start_soon(lambda: s.write(bytes(8 << 20)))
    r = await b.accept_stream()
    got = 0
    while got < 8 << 20:
        got += len(await r.read())
    assert r._window_size >= 4 * INITIAL_WINDOW


async def test_a_reader_that_does_not_read_holds_the_sender_to_its_window(pair, nursery):
    a, b = pair
    s = await a.open_stream()
    done = trio.Event()

    async def write():
        await s.write(bytes(4 << 20))
        done.set()
    nursery.start_soon(write)
    r = await b.accept_stream()
    await trio.sleep(0.3)
    assert not done.is_set()
    assert r._buffer.size == INITIAL_WINDOW and s._send_window == 0
    got = 0
    while got < 4 << 20:
        got += len(await r.read())
    with trio.fail_after(5):
        await done.wait()


async def test_half_close_and_sized_reads(pair):
    a, b = pair
    s = await a.open_stream()
    await s.write(b"hello world")
    await s.close()
    with pytest.raises(MuxedStreamClosed):
        await s.write(b"more")
    r = await b.accept_stream()
    assert await r.read(5) == b"hello"
    assert await r.read(1) == b" "
    assert await r.read(100) == b"world"
    with pytest.raises(MuxedStreamEOF):
        await r.read()
    await r.write(b"still open this way")  # the other direction is not closed
    await r.close()
    assert await read_all(s) == b"still open this way"


async def test_reset_reaches_the_other_side(pair):
    a, b = pair
    s = await a.open_stream()
    await s.write(b"x")
    r = await b.accept_stream()
    await s.reset()
    with trio.fail_after(5):
        while True:
            try:
                await r.read()
            except MuxedStreamReset:
                break
    with pytest.raises(MuxedStreamReset):
        await r.write(b"y")
    with pytest.raises(MuxedStreamReset):
        await s.write(b"z")


async def test_ping_measures_a_round_trip(pair):
    a, b = pair
    rtt = await a.ping()
    assert 0 <= rtt < 1


async def test_a_cancelled_writer_leaves_no_half_frame(pair, nursery):
    a, b = pair
    bulk = await a.open_stream()
    other = await a.open_stream()
    with trio.move_on_after(0.05):
        await bulk.write(bytes(64 << 20))  # blocks on the window; cancelled meanwhile
    await other.write(b"after the cancel")
    await other.close()
    rb = await b.accept_stream()  # a Yamux stream reaches the peer with its first frame
    ro = await b.accept_stream()
    assert await read_all(ro) == b"after the cancel"
    got = 0
    with trio.move_on_after(0.5):
        while True:
            got += len(await rb.read())
    assert 0 < got <= 64 << 20


async def test_data_stays_readable_when_the_peer_closes_right_after_its_fin(pair):
    a, b = pair
    s = await a.open_stream()
    await s.write(b"answer")
    await s.close()
    await a.close()
    r = await b.accept_stream()
    assert await read_all(r) == b"answer"
    with trio.fail_after(5):
        await b.event_closed.wait()


async def test_closing_sends_go_away_and_ends_everything(ours_and_peer):
    ours, peer = ours_and_peer
    calls = []

    async def on_close():
        calls.append(1)
    ours.on_close = on_close
    await peer.send(header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0))
    s = await ours.accept_stream()
    await ours.close()
    assert (await peer.expect(TYPE_GO_AWAY))[3] == 0
    assert ours.is_closed and calls == [1]
    with pytest.raises(MuxedConnUnavailable):
        await ours.accept_stream()
    with pytest.raises(MuxedStreamReset):
        await s.write(b"x")
    await ours.close()
    assert calls == [1]


async def test_pings_from_the_peer_are_answered_and_ours_measure_the_rtt(ours_and_peer):
    ours, peer = ours_and_peer
    ping = await peer.expect(TYPE_PING, FLAG_SYN)  # ours, sent at start
    await peer.send(header(TYPE_PING, FLAG_ACK, 0, ping[3]))
    with trio.fail_after(5):
        while not ours.rtt:
            await trio.sleep(0.01)
    await peer.send(header(TYPE_PING, FLAG_SYN, 0, 4242))
    assert (await peer.expect(TYPE_PING, FLAG_ACK))[1:4] == (FLAG_ACK, 0, 4242)


async def test_inbound_streams_are_acked_and_carry_data_sent_with_the_syn(ours_and_peer):
    ours, peer = ours_and_peer
    await peer.send(header(TYPE_DATA, FLAG_SYN, 1, 3) + b"abc", header(TYPE_DATA, FLAG_FIN, 1, 0))
    s = await ours.accept_stream()
    assert await read_all(s) == b"abc"
    await s.write_and_close(b"answer")  # the ACK goes with our first frame, as go-yamux's
    frame = await peer.expect(TYPE_DATA, FLAG_ACK)
    assert frame[1:3] == (FLAG_ACK, 1) and frame[4] == b"answer"
    # the FIN in a frame of its own (js-libp2p's yamux reads a FIN before the data beside it)
    assert (await peer.expect(TYPE_WINDOW_UPDATE, FLAG_FIN))[1:3] == (FLAG_FIN, 1)


async def test_an_inbound_stream_is_acked_before_our_reader_waits(ours_and_peer):
    ours, peer = ours_and_peer
    await peer.send(header(TYPE_DATA, FLAG_SYN, 1, 3) + b"abc")
    s = await ours.accept_stream()
    assert await s.read() == b"abc"  # there: no ACK needed yet
    async with trio.open_nursery() as nursery:
        nursery.start_soon(s.read)  # waits for more: the ACK goes out first
        assert (await peer.expect(TYPE_WINDOW_UPDATE, FLAG_ACK))[1:3] == (FLAG_ACK, 1)
        nursery.cancel_scope.cancel()


async def test_watching_for_the_peer_going_away_sends_nothing_and_sees_fin_and_rst(ours_and_peer):
    ours, peer = ours_and_peer
    await peer.send(header(TYPE_DATA, FLAG_SYN, 1, 3) + b"abc",
                    header(TYPE_DATA, FLAG_SYN, 3, 1) + b"x")
    first, second = await ours.accept_stream(), await ours.accept_stream()
    assert await first.read() == b"abc"
    ended = []
    first.on_remote_end(lambda: ended.append("first"))
    second.on_remote_end(lambda: ended.append("second"))
    with pytest.raises(trio.TooSlowError):  # no read: no ACK goes out while only watching
        await peer.expect(TYPE_WINDOW_UPDATE, timeout=0.2)
    assert ended == [] and not [f for f in peer.frames if f[2] in (1, 3)]
    await peer.send(header(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0),
                    header(TYPE_WINDOW_UPDATE, FLAG_RST, 3, 0))
    with trio.fail_after(5):
        while len(ended) < 2:
            await trio.sleep(0.01)
    assert ended == ["first", "second"]
    first.on_remote_end(lambda: ended.append("late"))  # already ended: called at once
    assert ended[-1] == "late"
    await first.write_and_close(b"answer")  # the held ACK still rides on the answer
    frame = await peer.expect(TYPE_DATA, FLAG_ACK)
    assert frame[1:3] == (FLAG_ACK, 1) and frame[4] == b"answer"


async def test_a_stream_we_open_reaches_the_peer_with_its_first_frame(ours_and_peer):
    ours, peer = ours_and_peer
    s = await ours.open_stream()
    await s.write_and_close(b"request")  # one write: SYN with the data, then FIN
    frame = await peer.expect(TYPE_DATA, FLAG_SYN)
    assert frame[1] == FLAG_SYN and frame[4] == b"request"
    assert (await peer.expect(TYPE_WINDOW_UPDATE, FLAG_FIN))[2] == s.stream_id
    quiet = await ours.open_stream()
    await quiet.reset()  # never on the wire: nothing to reset at the peer
    reader = await ours.open_stream()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.read)  # a reader first: its SYN goes before it waits
        assert (await peer.expect(TYPE_WINDOW_UPDATE, FLAG_SYN))[2] == reader.stream_id
        nursery.cancel_scope.cancel()
    assert not [f for f in peer.frames if f[2] == quiet.stream_id]


@pytest.mark.parametrize("frames, reason", [
    ([header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
      header(TYPE_DATA, 0, 1, INITIAL_WINDOW + 1) + bytes(INITIAL_WINDOW + 1)], "window"),
    ([header(TYPE_WINDOW_UPDATE, FLAG_SYN, 2, 0)], "ours to open"),
    ([header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0), header(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0)],
     "already open"),
    ([b"\x07" + header(TYPE_PING, 0, 0, 0)[1:]], "version"),
])
async def test_protocol_errors_end_the_connection_with_go_away(ours_and_peer, frames, reason):
    ours, peer = ours_and_peer
    await peer.send(*frames)
    code = (await peer.expect(TYPE_GO_AWAY))[3]
    assert code == GO_AWAY_PROTOCOL_ERROR
    with trio.fail_after(5):
        await ours.event_closed.wait()
    assert reason in ours._close_reason


async def test_streams_beyond_the_backlog_are_reset(nursery):
    ca, cb = channels()
    (ours,) = await running(nursery, YamuxConnection(cb, "peer", backlog=4))
    peer = Peer(ca)
    await peer.send(*(header(TYPE_WINDOW_UPDATE, FLAG_SYN, sid, 0) for sid in range(1, 13, 2)))
    resets = []
    with trio.fail_after(5):
        while len(resets) < 2:
            frame = await peer.expect(TYPE_WINDOW_UPDATE)
            if frame[1] & FLAG_RST:
                resets.append(frame[2])
    assert sorted(resets) == [9, 11]
    assert sorted(ours.streams) == [1, 3, 5, 7]
    await ours.close()


async def test_a_forged_noise_message_ends_the_connection(ours_and_peer):
    ours, peer = ours_and_peer
    await peer.channel._raw.write(b"\x00\x20" + bytes(32))
    with trio.fail_after(5):
        await ours.event_closed.wait()
    assert "failed authentication" in ours._close_reason


async def test_fin_then_reset_frames_for_unknown_streams_are_ignored(ours_and_peer):
    ours, peer = ours_and_peer
    await peer.send(header(TYPE_DATA, FLAG_FIN, 99, 0), header(TYPE_WINDOW_UPDATE, FLAG_RST, 77, 0),
                    header(TYPE_PING, FLAG_SYN, 0, 1))
    await peer.expect(TYPE_PING, FLAG_ACK)
    assert not ours.is_closed


async def test_a_peer_that_leaves_a_keepalive_ping_unanswered_is_disconnected(nursery):
    ca, cb = channels()
    ours = YamuxConnection(cb, "peer", keepalive=0.3)
    nursery.start_soon(ours.start)
    peer = Peer(ca)
    await peer.expect(TYPE_PING, FLAG_SYN)  # and never answered
    with trio.fail_after(5):
        await ours.event_closed.wait()
    assert "keepalive" in ours._close_reason


async def test_a_peer_that_answers_keepalive_pings_stays(nursery):
    ca, cb = channels()
    ours = YamuxConnection(cb, "peer", keepalive=0.2)
    nursery.start_soon(ours.start)
    peer = Peer(ca)
    for _ in range(4):
        ping = await peer.expect(TYPE_PING, FLAG_SYN)
        await peer.send(header(TYPE_PING, FLAG_ACK, 0, ping[3]))
    assert not ours.is_closed and ours.rtt > 0
    await ours.close()



# -- mplex ----------------------------------------------------------------------------------

@pytest.fixture
async def mplex_pair(nursery):
    a, b = await connected(nursery, MplexConnection)
    yield a, b
    await a.close()
    await b.close()


async def test_mplex_streams_both_ways_with_the_same_ids_stay_apart(mplex_pair):
    a, b = mplex_pair
    sa = await a.open_stream()  # id 0 opened by a
    sb = await b.open_stream()  # id 0 opened by b
    ra, rb = await b.accept_stream(), await a.accept_stream()
    await sa.write(b"from a")
    await sb.write(b"from b")
    await sa.close()
    await sb.close()
    assert await read_all(ra) == b"from a" and await read_all(rb) == b"from b"
    await ra.write(b"back to a")
    await ra.close()
    assert await read_all(sa) == b"back to a"


async def test_mplex_bulk_and_reset(mplex_pair, nursery):
    a, b = mplex_pair
    s = await a.open_stream()
    data = os.urandom(1 << 20) * 12
    nursery.start_soon(lambda: s.write(data))
    r = await b.accept_stream()
    got = bytearray()
    while len(got) < len(data):
        got += await r.read()
    assert bytes(got) == data
    await r.reset()
    with trio.fail_after(5):
        while True:
            try:
                await s.write(b"x")
                await trio.sleep(0.01)
            except MuxedStreamReset:
                break


async def test_mplex_a_slow_reader_holds_the_sender_back_instead_of_buffering(nursery):
    a, b = await connected(nursery, MplexConnection, max_buffer=1 << 20)
    s = await a.open_stream()
    nursery.start_soon(lambda: s.write(bytes(64 << 20)))
    r = await b.accept_stream()
    await trio.sleep(0.5)
    assert (1 << 20) < r._buffer.size < (4 << 20)  # reading paused just past the bound
    got = 0
    while got < 64 << 20:
        got += len(await r.read())
    assert not r.reset_received


async def test_mplex_a_stalled_stream_is_reset_and_the_others_go_on(nursery):
    a, b = await connected(nursery, MplexConnection, max_buffer=1 << 16, stall_timeout=0.3)
    stalled = await a.open_stream()
    other = await a.open_stream()
    await stalled.write(bytes(1 << 18))  # never read on b
    r_stalled, r_other = await b.accept_stream(), await b.accept_stream()
    await other.write(b"still flowing")
    await other.close()
    with trio.fail_after(5):
        assert await read_all(r_other) == b"still flowing"
    assert r_stalled.reset_received


async def test_mplex_empty_messages_are_not_the_end_of_a_stream(ours_and_mplex_peer):
    ours, peer = ours_and_mplex_peer
    await peer.send(frame(0, NEW_STREAM, b"0"), frame(0, MESSAGE_INITIATOR, b""),
                    frame(0, MESSAGE_INITIATOR, b"data"), frame(0, CLOSE_INITIATOR))
    s = await ours.accept_stream()
    assert await read_all(s) == b"data"


@pytest.mark.parametrize("frames, reason", [
    ([frame(0, NEW_STREAM), frame(0, NEW_STREAM)], "has open"),
    ([b"\x07\x00"], "flag 7"),
    ([b"\x02" + b"\x80" * 3 + b"\x01"], "limit"),  # a 2 MiB length
    ([b"\xff" * 10], "varint"),
])
async def test_mplex_protocol_errors_end_the_connection(ours_and_mplex_peer, frames, reason):
    ours, peer = ours_and_mplex_peer
    await peer.send(*frames)
    with trio.fail_after(5):
        await ours.event_closed.wait()
    assert reason in ours._close_reason


@pytest.fixture
async def ours_and_mplex_peer(nursery):
    ca, cb = channels()
    (ours,) = await running(nursery, MplexConnection(cb, "peer"))
    peer = Peer(ca)
    peer.decoder = MplexDecoder()
    yield ours, peer
    await ours.close()
