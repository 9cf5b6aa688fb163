"""The sans-IO gossipsub router: simulated networks of routers exchanging RPCs in-process
(exactly-once delivery, mesh degree, invalid signatures, spammers graylisted, GRAFT during
backoff, IWANT floods), the codec and signatures."""

from __future__ import annotations

import random

import nacl.signing
import pytest

from p2pd.gossip.router import Params, Router, Validation
from p2pd.gossip.wire import (
    FLOODSUB,
    MESHSUB_11,
    RPC,
    Control,
    Message,
    PubsubFrameDecoder,
    PubsubWireError,
    SignatureError,
    decode_rpc,
    encode_rpc,
    sign,
    verify,
)

PROTO_PREFIX = b"\x08\x01\x12\x20"


class Node:
    def __init__(self, seed: int, **kw):
        self.sk = nacl.signing.SigningKey(bytes([seed % 256, seed // 256]) + bytes(30))
        self.key_proto = PROTO_PREFIX + bytes(self.sk.verify_key)
        self.id = bytes([0, len(self.key_proto)]) + self.key_proto
        self.router = Router(self.id, rng=random.Random(seed),
                             signer=lambda m: sign(m, self.sk, self.key_proto), **kw)
        self.got: list[bytes] = []


class Net:
    def __init__(self, n: int, seed: int = 1, **kw):
        self.nodes = [Node(i + 1, **kw) for i in range(n)]
        self.by_id = {x.id: x for x in self.nodes}
        self.now = 0.0
        self.rng = random.Random(seed)
        self.tamper = None

    def link(self, a: Node, b: Node, proto: str = MESHSUB_11, proto_b: str | None = None):
        a.router.add_peer(b.id, proto_b or proto, self.now, outbound=True)
        b.router.add_peer(a.id, proto, self.now)

    def connect_random(self, degree: int = 8):
        for a in self.nodes:
            for b in self.rng.sample(self.nodes, degree):
                if a is not b and b.id not in a.router.peers:
                    self.link(a, b)

    def pump(self, rounds: int = 50):
        for _ in range(rounds):
            moved = False
            for node in self.nodes:
                for peer, rpc in node.router.take_outgoing().items():
                    moved = True
                    frame = encode_rpc(rpc)
                    if self.tamper:
                        frame = self.tamper(node, peer, frame)
                    d = PubsubFrameDecoder()
                    d.receive_data(frame)
                    self.by_id[peer].router.handle_rpc(node.id, decode_rpc(d.next_frame()),
                                                       self.now)
                for msg_id, _m in node.router.take_deliveries():
                    node.got.append(msg_id)
            if not moved:
                return

    def tick(self, seconds: float = 1.0):
        self.now += seconds
        for node in self.nodes:
            node.router.heartbeat(self.now)
        self.pump()


def test_codec_round_trip_and_signatures():
    n = Node(5)
    m = sign(Message("t", b"hello", n.id, (7).to_bytes(8, "big")), n.sk, n.key_proto)
    verify(m)
    rpc = RPC([(True, "t"), (False, "u")], [m],
              Control([("t", [b"a", b"b"])], [b"c"], ["t"], []))
    d = PubsubFrameDecoder()
    d.receive_data(encode_rpc(rpc))
    back = decode_rpc(d.next_frame())
    assert back.subscriptions == rpc.subscriptions and back.messages == [m]
    assert back.control.ihave == [("t", [b"a", b"b"])] and back.control.iwant == [b"c"]
    m.data = b"tampered"
    with pytest.raises(SignatureError):
        verify(m)
    with pytest.raises(PubsubWireError):
        decode_rpc(b"\xff\xff")


def test_thirty_nodes_every_message_reaches_every_subscriber_once():
    net = Net(30)
    net.connect_random(6)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.pump()
    for _ in range(3):
        net.tick()
    sent = []
    for node in net.rng.sample(net.nodes, 10):
        sent.append(node.router.publish("t", b"msg from %d" % node.id[-1], net.now))
        net.pump()
    for _ in range(3):
        net.tick()
    for node in net.nodes:
        assert sorted(node.got) == sorted(sent)  # exactly once each, own messages included
    for node in net.nodes:
        assert len(node.router.mesh["t"]) <= node.router.p.d_hi


def test_mesh_degree_converges():
    net = Net(40, seed=3)
    net.connect_random(14)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    for _ in range(5):
        net.tick()
    sizes = [len(n.router.mesh["t"]) for n in net.nodes]
    assert all(4 <= s <= 12 for s in sizes), sizes


def test_bad_signatures_are_dropped_and_penalised():
    net = Net(6)
    for a in net.nodes:
        for b in net.nodes:
            if a is not b and b.id not in a.router.peers:
                net.link(a, b)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.tick()
    liar = net.nodes[0]
    victim = net.nodes[1]
    forged = Message("t", b"forged", net.nodes[2].id, (1).to_bytes(8, "big"), bytes(64))
    victim.router.handle_rpc(liar.id, RPC(messages=[forged]), net.now)
    net.pump()
    assert all(not n.got for n in net.nodes)
    assert victim.router.counters["invalid"] == 1
    assert victim.router.peer_score(liar.id, net.now) < 0


def test_spammers_sink_below_graylist_and_honest_delivery_continues():
    """20 nodes, 6 spam invalid messages at full speed: honest messages reach every honest
    subscriber and every spammer ends below the graylist threshold at its honest peers."""
    net = Net(20, seed=7)
    net.connect_random(8)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.tick()
    spammers, honest = net.nodes[:6], net.nodes[6:]
    spam_ids = {s.id for s in spammers}
    sent = []
    for round_ in range(10):
        for s in spammers:
            for peer in list(s.router.peers):
                junk = Message("t", b"spam %d" % round_, s.id,
                               (1000 + round_).to_bytes(8, "big"), bytes(64))
                net.by_id[peer].router.handle_rpc(s.id, RPC(messages=[junk] * 3), net.now)
        src = honest[round_ % len(honest)]
        sent.append(src.router.publish("t", b"honest %d" % round_, net.now))
        net.pump()
        net.tick(0.5)
    for _ in range(3):
        net.tick()
    for h in honest:
        assert set(sent) <= set(h.got), h.id
        assert len(h.got) == len(set(h.got))
        for peer in h.router.peers:
            if peer in spam_ids:
                assert h.router.peer_score(peer, net.now) < h.router.th.graylist


def test_graft_during_backoff_is_penalised():
    net = Net(2)
    a, b = net.nodes
    net.link(a, b)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.pump()
    net.tick()
    assert a.id in b.router.mesh["t"] and b.id in a.router.mesh["t"]
    b.router.unsubscribe("t", net.now)  # b prunes a: a must back off
    b.router.subscribe("t", net.now)
    net.pump()
    assert a.id not in b.router.mesh["t"]
    assert a.router.backoff[("t", b.id)] > net.now
    net.tick()  # an obedient a does not graft b during the backoff
    assert a.id not in b.router.mesh["t"]
    for _ in range(3):  # a misbehaving a does
        b.router.handle_rpc(a.id, RPC(control=Control(graft=["t"])), net.now)
    assert b.router.score.peers[a.id].behaviour == 3
    assert a.id not in b.router.mesh["t"]
    assert b.router.peer_score(a.id, net.now) < 0


def test_iwant_floods_are_bounded():
    net = Net(2)
    a, b = net.nodes
    net.link(a, b)
    a.router.subscribe("t", net.now)
    b.router.subscribe("t", net.now)
    net.pump()
    mid = a.router.publish("t", b"x", net.now)
    a.router.take_outgoing()
    answered = 0
    for _ in range(10):
        a.router.handle_rpc(b.id, RPC(control=Control(iwant=[mid] * 50)), net.now)
        answered += sum(len(r.messages) for r in a.router.take_outgoing().values())
    assert answered <= a.router.p.gossip_retransmission


def test_floodsub_peers_get_everything_of_their_topics():
    net = Net(3)
    g, f1, f2 = net.nodes
    f1.router.mode = "floodsub"
    f2.router.mode = "floodsub"
    net.link(g, f1, FLOODSUB)
    net.link(f1, f2, FLOODSUB)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.pump()
    mid = g.router.publish("t", b"to the flood", net.now)
    net.pump()
    assert f1.got == [mid] and f2.got == [mid]


def test_validator_reject_and_ignore():
    verdicts = {b"bad": Validation.REJECT, b"meh": Validation.IGNORE}
    net = Net(2, validator=lambda peer, m: verdicts.get(m.data, Validation.ACCEPT))
    a, b = net.nodes
    net.link(a, b)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.pump()
    for data in (b"bad", b"meh", b"good"):
        a.router.publish("t", data, net.now)
    net.pump()
    assert len(b.got) == 1 and b.router.counters["invalid"] == 1


def test_px_and_params():
    assert Params().d == 6 and Params().d_lo == 4 and Params().d_hi == 12
    assert Params().heartbeat_interval == 1.0 and Params().fanout_ttl == 60.0


def test_replayed_messages_are_dropped_as_duplicates():
    net = Net(2)
    a, b = net.nodes
    net.link(a, b)
    for node in net.nodes:
        node.router.subscribe("t", net.now)
    net.pump()
    a.router.publish("t", b"once", net.now)
    rpc = a.router.take_outgoing()[b.id]
    b.router.handle_rpc(a.id, rpc, net.now)
    for _ in range(5):  # the same signed message again and again
        b.router.handle_rpc(a.id, RPC(messages=list(rpc.messages)), net.now)
    assert len(b.router.take_deliveries()) == 1
    assert b.router.counters["duplicates"] == 5
    assert b.router.peer_score(a.id, net.now) >= 0  # replays are not invalid, only useless


def test_a_peer_back_on_a_new_connection_gets_what_it_missed_through_ihave_iwant():
    """Both are in each other's mesh (a small network: nobody outside it to gossip); b's
    connection is cut at its end, what a publishes meanwhile is lost on the dead one, and b
    comes back on a new connection: a offers its cache at once and b asks for it."""
    net = Net(2)
    a, b = net.nodes
    net.link(a, b)
    for n in (a, b):
        n.router.subscribe("t", net.now)
    net.pump()
    net.tick()
    assert b.id in a.router.mesh["t"]
    b.router.remove_peer(a.id, net.now)  # b's end of the connection is gone
    missed = [a.router.publish("t", b"while away %d" % i, net.now) for i in range(3)]
    a.router.take_outgoing()  # written into the dead connection: lost
    net.now += 2.0
    b.router.add_peer(a.id, MESHSUB_11, net.now, outbound=True)  # b dials again
    a.router.stream_reopened(b.id, net.now)  # a's stream to b died; a new one is up
    net.pump()
    assert set(missed) <= set(b.got)
    assert a.router.counters["catch_up_ihaves"] == 1
    assert "t" in b.router.peers[a.id].topics  # a said its subscriptions again


def test_a_peer_that_joins_a_topic_is_offered_the_cache_and_nothing_else():
    net = Net(3)
    a, b, c = net.nodes
    net.link(a, b)
    net.link(a, c)
    a.router.subscribe("t", net.now)
    a.router.subscribe("u", net.now)
    recent = a.router.publish("t", b"recent", net.now)
    a.router.publish("u", b"of another topic", net.now)
    net.pump()
    b.router.subscribe("t", net.now)  # b joins t: a offers t's cache (not u's)
    net.pump()
    assert b.got == [recent]
    a.router.score.add_penalty(c.id)
    for _ in range(200):  # c's score far below the gossip threshold: offered nothing
        a.router.score.add_penalty(c.id)
    c.router.subscribe("t", net.now)
    net.pump()
    assert c.got == []


def test_a_restarted_node_does_not_deliver_its_own_earlier_messages_offered_back():
    """a publishes, restarts (same identity, a fresh router: empty seen-cache) and rejoins
    within b's cache window: b offers a's old messages (catch-up IHAVE); a must drop what
    claims to be its own (go's RejectSelfOrigin), take b's, and not hold it against b."""
    net = Net(2)
    a, b = net.nodes
    net.link(a, b)
    for n in (a, b):
        n.router.subscribe("t", net.now)
    net.pump()
    net.tick()
    own = [a.router.publish("t", b"before the restart %d" % i, net.now) for i in range(3)]
    theirs = b.router.publish("t", b"from b", net.now)
    net.pump()
    assert set(b.got) == set(own) | {theirs}
    a.router = Router(a.id, rng=random.Random(99),
                      signer=lambda m: sign(m, a.sk, a.key_proto))
    a.got = []
    b.router.remove_peer(a.id, net.now)
    net.now += 2.0
    a.router.subscribe("t", net.now)
    net.link(a, b)
    net.pump()
    assert b.router.counters["catch_up_ihaves"] >= 1
    assert a.got == [theirs]  # b's message once; none of its own again
    assert a.router.counters["self_origin"] == 3
    assert a.router.peer_score(b.id, net.now) >= 0
    fresh = a.router.publish("t", b"after the restart", net.now)
    net.pump()
    assert a.got == [theirs, fresh] and b.got.count(fresh) == 1
