"""The gossipsub v1.1 / floodsub router, sans-IO.

:class:`Router` is fed events (a peer came or went, an RPC arrived, the application
subscribed or published, a heartbeat is due) with the current time, and queues what to do:
RPCs to send per peer (:meth:`Router.take_outgoing`) and messages to hand to local
subscribers (:meth:`Router.take_deliveries`). It reads no clock and does no I/O; randomness
comes from an injected :class:`random.Random`, so the same code runs in the simulator.

What it implements (gossipsub v1.0 and v1.1 specs, pubsub spec):

* Messages: StrictSign by default (author, seqno and Ed25519 signature verified before
  anything else, a whole RPC's signatures in one native batch); a seen-cache with TTL;
  a size limit; a message-id function; an application validator returning
  ACCEPT / REJECT / IGNORE; a message claiming to be ours that a peer sends is dropped
  (go's RejectSelfOrigin: a restarted node would otherwise deliver its own old messages).
* Mesh: D=6, D_lo=4, D_hi=12, D_score=4, D_out=2, D_lazy=6, gossip factor 0.25; fanout
  with a TTL; IHAVE/IWANT gossip from a message cache of 5 windows (3 gossiped); GRAFT/PRUNE
  with backoff (1 min, 10 s after unsubscribing) and peer exchange; flood publishing;
  opportunistic grafting.
* Scoring (:mod:`p2pd.gossip.score`): graylisted peers' RPCs are ignored, peers below the
  gossip threshold get and give no gossip, peers below the publish threshold get no flood
  publishes, negative-score peers leave the mesh, PX is taken only from peers above the
  accept-PX threshold. GRAFT during backoff and broken IWANT promises add behaviour penalty.
* Floodsub peers (``/floodsub/1.0.0``) get every message of topics they subscribe to, and no
  control messages; ``mode="floodsub"`` makes the whole router a floodsub router.
* Bounds against floods: IHAVE messages and advertised ids per peer per heartbeat, IWANT
  retransmissions per message per peer, topics per peer.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from .. import native
from .score import PeerScore, ScoreParams, Thresholds
from .wire import (
    FLOODSUB,
    MESHSUB_11,
    RPC,
    Control,
    Message,
    Prune,
    SignatureError,
    author_key,
    default_msg_id,
)


class Validation(Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"


@dataclass(slots=True)
class Params:
    d: int = 6
    d_lo: int = 4
    d_hi: int = 12
    d_score: int = 4
    d_out: int = 2
    d_lazy: int = 6
    gossip_factor: float = 0.25
    heartbeat_interval: float = 1.0
    #: The first heartbeat comes this long after the start (go-libp2p-pubsub: 100 ms).
    heartbeat_initial_delay: float = 0.1
    fanout_ttl: float = 60.0
    history_length: int = 5
    history_gossip: int = 3
    seen_ttl: float = 120.0
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    prune_peers: int = 16
    flood_publish: bool = True
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    max_ihave_length: int = 5000
    max_ihave_messages: int = 10
    iwant_followup: float = 3.0
    gossip_retransmission: int = 3
    max_message_size: int = 1 << 20
    max_topics_per_peer: int = 1024
    strict_sign: bool = True


@dataclass(slots=True)
class PeerState:
    protocol: str
    outbound: bool = False
    topics: set[str] = field(default_factory=set)
    ihaves: int = 0  # IHAVE messages this heartbeat
    asked: int = 0  # ids we asked for from this peer this heartbeat


class _MessageCache:
    def __init__(self, history: int, gossip: int) -> None:
        self.gossip = gossip
        self.windows: list[list[tuple[bytes, str]]] = [[] for _ in range(history)]
        self.msgs: dict[bytes, Message] = {}
        self.sent: dict[bytes, dict[bytes, int]] = {}

    def put(self, msg_id: bytes, msg: Message) -> None:
        self.msgs[msg_id] = msg
        self.windows[0].append((msg_id, msg.topic))

    def get_for(self, msg_id: bytes, peer: bytes) -> tuple[Message | None, int]:
        msg = self.msgs.get(msg_id)
        if msg is None:
            return None, 0
        counts = self.sent.setdefault(msg_id, {})
        counts[peer] = counts.get(peer, 0) + 1
        return msg, counts[peer]

    def gossip_ids(self, topic: str, windows: int | None = None) -> list[bytes]:
        return [i for w in self.windows[: windows or self.gossip] for i, t in w if t == topic]

    def shift(self) -> None:
        for msg_id, _t in self.windows.pop():
            self.msgs.pop(msg_id, None)
            self.sent.pop(msg_id, None)
        self.windows.insert(0, [])


class Router:
    def __init__(self, me: bytes, *, params: Params | None = None,
                 score_params: ScoreParams | None = None, thresholds: Thresholds | None = None,
                 rng: random.Random | None = None, mode: str = "gossipsub",
                 msg_id: Callable[[Message], bytes] = default_msg_id,
                 validator: Callable[[bytes, Message], Validation] | None = None,
                 signer: Callable[[Message], Message] | None = None) -> None:
        self.me = me
        self.p = params or Params()
        self.th = thresholds or Thresholds()
        self.score = PeerScore(score_params)
        self.rng = rng or random.Random()
        self.mode = mode
        self.msg_id = msg_id
        self.validator = validator
        self.signer = signer
        self.peers: dict[bytes, PeerState] = {}
        self.topics: dict[str, set[bytes]] = {}  # topic -> peers subscribed to it
        self.subscriptions: set[str] = set()
        self.mesh: dict[str, set[bytes]] = {}
        self.fanout: dict[str, set[bytes]] = {}
        self.fanout_last: dict[str, float] = {}
        self.backoff: dict[tuple[str, bytes], float] = {}
        self.mcache = _MessageCache(self.p.history_length, self.p.history_gossip)
        self.seen: OrderedDict[bytes, float] = OrderedDict()
        self.promises: dict[bytes, tuple[bytes, float]] = {}  # msg id -> (peer, deadline)
        self._ticks = 0
        self._seqno = int.from_bytes(self.rng.randbytes(8), "big") >> 1
        self._out: dict[bytes, RPC] = {}
        self._deliveries: list[tuple[bytes, Message]] = []
        self.px_candidates: list[bytes] = []
        self.counters = {"delivered": 0, "duplicates": 0, "invalid": 0, "ignored_rpcs": 0,
                         "forwarded": 0, "catch_up_ihaves": 0, "self_origin": 0}

    # -- output -----------------------------------------------------------------------------
    def take_outgoing(self) -> dict[bytes, RPC]:
        out, self._out = self._out, {}
        return {p: r for p, r in out.items() if not r.is_empty()}

    def take_deliveries(self) -> list[tuple[bytes, Message]]:
        out, self._deliveries = self._deliveries, []
        return out

    def _rpc(self, peer: bytes) -> RPC:
        r = self._out.get(peer)
        if r is None:
            r = self._out[peer] = RPC()
        return r

    def _gossips(self, peer: bytes) -> bool:
        st = self.peers.get(peer)
        return st is not None and st.protocol != FLOODSUB

    # -- peers -------------------------------------------------------------------------------
    def add_peer(self, peer: bytes, protocol: str, now: float, *, outbound: bool = False,
                 ip: str | None = None) -> None:
        if peer == self.me:
            return
        if peer not in self.peers:
            self.peers[peer] = PeerState(protocol, outbound)
            self.score.add_peer(peer, ip)
            if self.subscriptions:  # hello: our subscriptions
                self._rpc(peer).subscriptions += [(True, t) for t in sorted(self.subscriptions)]

    def stream_reopened(self, peer: bytes, now: float) -> None:
        """Our stream to a known peer was opened again after the last one died (its old
        connection broke, a new one is up: a partition that healed, a router that
        rebooted). The far end may be a fresh view of us: say our subscriptions again,
        and offer what it may have missed (:meth:`catch_up`)."""
        if peer not in self.peers:
            return
        if self.subscriptions:
            self._rpc(peer).subscriptions += [(True, t) for t in sorted(self.subscriptions)]
        self.catch_up(peer, now)

    def catch_up(self, peer: bytes, now: float, topics: Iterable[str] | None = None) -> None:
        """IHAVE, at once, for every message of the cache (its whole history, not only
        the gossip windows) in ``topics`` (default: those we and ``peer`` share).

        Heartbeat gossip goes only to peers outside the mesh, so a peer that comes back and
        is grafted at once (in a small network every topic peer is in the mesh) would never
        hear of what was published while it was away; this lets it ask with IWANT."""
        st = self.peers.get(peer)
        if st is None or st.protocol == FLOODSUB or self.mode == "floodsub":
            return
        if self.score.score(peer, now) < self.th.gossip:
            return
        for topic in sorted(st.topics if topics is None else topics):
            if topic not in self.subscriptions or topic not in st.topics:
                continue
            ids = self.mcache.gossip_ids(topic, len(self.mcache.windows))
            if ids:
                self._rpc(peer).control.ihave.append((topic, ids[-self.p.max_ihave_length:]))
                self.counters["catch_up_ihaves"] += 1

    def remove_peer(self, peer: bytes, now: float) -> None:
        st = self.peers.pop(peer, None)
        if st is None:
            return
        for topic in st.topics:
            self.topics.get(topic, set()).discard(peer)
        for topic, members in self.mesh.items():
            if peer in members:
                members.discard(peer)
                self.score.prune(peer, topic, now)
        for members in self.fanout.values():
            members.discard(peer)
        self.score.remove_peer(peer, now)
        self._out.pop(peer, None)

    def peer_score(self, peer: bytes, now: float) -> float:
        return self.score.score(peer, now)

    # -- application ---------------------------------------------------------------------------
    def subscribe(self, topic: str, now: float) -> None:
        if topic in self.subscriptions:
            return
        self.subscriptions.add(topic)
        for peer in self.peers:
            self._rpc(peer).subscriptions.append((True, topic))
        if self.mode == "floodsub":
            return
        members = self.fanout.pop(topic, set())
        self.fanout_last.pop(topic, None)
        members = {p for p in members if self._mesh_candidate(p, topic, now)}
        if len(members) < self.p.d:
            more = [p for p in self._topic_peers(topic) if p not in members
                    and self._mesh_candidate(p, topic, now)]
            self.rng.shuffle(more)
            members |= set(more[: self.p.d - len(members)])
        self.mesh[topic] = set()
        for peer in members:
            self._graft(peer, topic, now)

    def unsubscribe(self, topic: str, now: float) -> None:
        if topic not in self.subscriptions:
            return
        self.subscriptions.discard(topic)
        for peer in self.peers:
            self._rpc(peer).subscriptions.append((False, topic))
        for peer in self.mesh.pop(topic, set()):
            self._send_prune(peer, topic, now, self.p.unsubscribe_backoff)
            self.score.prune(peer, topic, now)

    def publish(self, topic: str, data: bytes, now: float) -> bytes:
        """Sign (StrictSign) and send a message; returns its id. Raises ValueError when
        the message is too big."""
        if len(data) > self.p.max_message_size:
            raise ValueError(f"message of {len(data)} bytes exceeds {self.p.max_message_size}")
        self._seqno = (self._seqno + 1) % (1 << 64)
        msg = Message(topic=topic, data=data, from_peer=self.me,
                      seqno=self._seqno.to_bytes(8, "big"))
        if self.signer is not None:
            msg = self.signer(msg)
        msg_id = self.msg_id(msg)
        self._mark_seen(msg_id, now)
        self.mcache.put(msg_id, msg)
        if topic in self.subscriptions:
            self._deliveries.append((msg_id, msg))
        self._send_message(msg, msg_id, None, now, publishing=True)
        return msg_id

    # -- input --------------------------------------------------------------------------------
    def handle_rpc(self, peer: bytes, rpc: RPC, now: float) -> None:
        st = self.peers.get(peer)
        if st is None:
            return
        joined = []
        for sub, topic in rpc.subscriptions:
            if sub:
                if topic not in st.topics and len(st.topics) >= self.p.max_topics_per_peer:
                    continue
                if topic not in st.topics:
                    joined.append(topic)
                st.topics.add(topic)
                self.topics.setdefault(topic, set()).add(peer)
            else:
                st.topics.discard(topic)
                self.topics.get(topic, set()).discard(peer)
                if peer in self.mesh.get(topic, ()):
                    self.mesh[topic].discard(peer)
                    self.score.prune(peer, topic, now)
        if self.score.score(peer, now) < self.th.graylist:
            self.counters["ignored_rpcs"] += 1
            return
        if joined:
            self.catch_up(peer, now, joined)
        if rpc.messages:
            self._handle_messages(peer, rpc.messages, now)
        if self.mode != "floodsub" and st.protocol != FLOODSUB:
            self._handle_control(peer, rpc.control, now)

    def _handle_messages(self, peer: bytes, messages: list[Message], now: float) -> None:
        fresh: list[tuple[bytes, Message]] = []
        for msg in messages:
            msg_id = self.msg_id(msg)
            self.promises.pop(msg_id, None)
            if msg_id in self.seen:
                self.counters["duplicates"] += 1
                self.score.duplicate(peer, msg_id, msg.topic, now)
                continue
            if msg.from_peer == self.me:
                # Ours, forwarded back: after a restart (same identity, empty seen-cache)
                # peers still hold our last messages and offer them when we rejoin; taken,
                # they would reach our new subscribers a second time. go-libp2p-pubsub
                # drops them too (RejectSelfOrigin). No penalty: the peer may just have
                # answered our IWANT.
                self.counters["self_origin"] += 1
                self._mark_seen(msg_id, now)
                continue
            if len(msg.data) > self.p.max_message_size:
                self._reject(peer, msg, msg_id, now)
                continue
            fresh.append((msg_id, msg))
        if not fresh:
            return
        ok = [True] * len(fresh)
        if self.p.strict_sign:
            keys: list[bytes | None] = []
            for _i, (_mid, msg) in enumerate(fresh):
                try:
                    keys.append(author_key(msg) if len(msg.seqno) == 8 else None)
                except SignatureError:
                    keys.append(None)
            batch = [(k, m.signed_bytes(), m.signature) for k, (_i, m) in zip(keys, fresh,
                                                                             strict=True) if k]
            results = iter(native.verify_batch(batch) if batch else [])
            ok = [bool(k) and next(results) for k in keys]
        for good, (msg_id, msg) in zip(ok, fresh, strict=True):
            if msg_id in self.seen:  # the same message twice in one RPC
                self.counters["duplicates"] += 1
                continue
            if not good:
                self._reject(peer, msg, msg_id, now)
                continue
            verdict = self.validator(peer, msg) if self.validator else Validation.ACCEPT
            self._mark_seen(msg_id, now)
            if verdict is Validation.REJECT:
                self._reject(peer, msg, msg_id, now, seen=True)
                continue
            if verdict is Validation.IGNORE:
                continue
            self.score.validated(peer, msg_id, msg.topic, now)
            self.mcache.put(msg_id, msg)
            if msg.topic in self.subscriptions:
                self._deliveries.append((msg_id, msg))
                self.counters["delivered"] += 1
            self._send_message(msg, msg_id, peer, now)

    def _reject(self, peer: bytes, msg: Message, msg_id: bytes, now: float,
                seen: bool = False) -> None:
        self.counters["invalid"] += 1
        self.score.rejected(peer, msg.topic)
        if not seen:
            self._mark_seen(msg_id, now)

    def _mark_seen(self, msg_id: bytes, now: float) -> None:
        self.seen[msg_id] = now
        self.seen.move_to_end(msg_id)

    def _handle_control(self, peer: bytes, c: Control, now: float) -> None:
        score = self.score.score(peer, now)
        st = self.peers[peer]
        # IHAVE: ask for what we have not seen, within bounds
        if c.ihave and score >= self.th.gossip:
            st.ihaves += 1
            if st.ihaves <= self.p.max_ihave_messages:
                want: list[bytes] = []
                for topic, ids in c.ihave:
                    if topic not in self.subscriptions:
                        continue
                    for msg_id in ids:
                        if msg_id in self.seen or msg_id in self.promises:
                            continue
                        if st.asked + len(want) >= self.p.max_ihave_length:
                            break
                        want.append(msg_id)
                if want:
                    self.rng.shuffle(want)
                    st.asked += len(want)
                    self._rpc(peer).control.iwant += want
                    self.promises[want[0]] = (peer, now + self.p.iwant_followup)
        # IWANT: answer from the message cache, a few times per message per peer at most
        if c.iwant and score >= self.th.gossip:
            out = self._rpc(peer)
            for msg_id in c.iwant:
                msg, count = self.mcache.get_for(msg_id, peer)
                if msg is not None and count <= self.p.gossip_retransmission:
                    out.messages.append(msg)
        # GRAFT
        prunes: list[str] = []
        for topic in c.graft:
            if topic not in self.subscriptions or self.mode == "floodsub":
                prunes.append(topic)
                continue
            members = self.mesh.setdefault(topic, set())
            if peer in members:
                continue
            until = self.backoff.get((topic, peer))
            if until is not None and until > now:
                self.score.add_penalty(peer)  # P7: GRAFT during backoff
                prunes.append(topic)
                continue
            if score < 0 or (len(members) >= self.p.d_hi and not st.outbound):
                prunes.append(topic)
                continue
            members.add(peer)
            self.score.graft(peer, topic, now)
        for topic in prunes:
            self._send_prune(peer, topic, now, self.p.prune_backoff, px=score >= 0)
        # PRUNE
        for pr in c.prune:
            members = self.mesh.get(pr.topic)
            if members is not None and peer in members:
                members.discard(peer)
                self.score.prune(peer, pr.topic, now)
            backoff = float(pr.backoff) if pr.backoff else self.p.prune_backoff
            self.backoff[(pr.topic, peer)] = now + min(backoff, 3600.0)
            if pr.peers and score >= self.th.accept_px:
                self.px_candidates += [p for p in pr.peers[: self.p.prune_peers]
                                       if p != self.me and p not in self.peers]

    # -- forwarding ---------------------------------------------------------------------------
    def _send_message(self, msg: Message, msg_id: bytes, source: bytes | None, now: float,
                      *, publishing: bool = False) -> None:
        topic = msg.topic
        targets: set[bytes] = set()
        subscribed = self.topics.get(topic, set())
        # floodsub peers get everything of topics they subscribed to
        targets |= {p for p in subscribed if self.peers[p].protocol == FLOODSUB}
        if self.mode == "floodsub":
            targets |= subscribed
        elif publishing and self.p.flood_publish:
            targets |= {p for p in subscribed
                        if self.score.score(p, now) >= self.th.publish}
        elif topic in self.mesh:
            targets |= self.mesh[topic]
        elif publishing:
            members = self.fanout.get(topic)
            if not members:
                cands = [p for p in subscribed if self._gossips(p)
                         and self.score.score(p, now) >= self.th.publish]
                self.rng.shuffle(cands)
                members = self.fanout[topic] = set(cands[: self.p.d])
            self.fanout_last[topic] = now
            targets |= members
        targets.discard(source)
        targets.discard(msg.from_peer)
        for peer in targets:
            if peer in self.peers:
                self._rpc(peer).messages.append(msg)
                self.counters["forwarded"] += 1

    # -- mesh helpers -------------------------------------------------------------------------
    def _topic_peers(self, topic: str) -> list[bytes]:
        return sorted(p for p in self.topics.get(topic, ()) if self._gossips(p))

    def _mesh_candidate(self, peer: bytes, topic: str, now: float) -> bool:
        if not self._gossips(peer) or topic not in self.peers[peer].topics:
            return False
        until = self.backoff.get((topic, peer))
        if until is not None and until > now:
            return False
        return self.score.score(peer, now) >= 0

    def _graft(self, peer: bytes, topic: str, now: float) -> None:
        self.mesh.setdefault(topic, set()).add(peer)
        self.score.graft(peer, topic, now)
        self._rpc(peer).control.graft.append(topic)

    def _send_prune(self, peer: bytes, topic: str, now: float, backoff: float,
                    px: bool = True) -> None:
        self.backoff[(topic, peer)] = now + backoff
        peers: list[bytes] = []
        if px and self.peers.get(peer) and self.peers[peer].protocol == MESHSUB_11:
            cands = [p for p in self._topic_peers(topic) if p != peer
                     and self.score.score(p, now) >= 0]
            self.rng.shuffle(cands)
            peers = cands[: self.p.prune_peers]
        proto = self.peers[peer].protocol if peer in self.peers else MESHSUB_11
        self._rpc(peer).control.prune.append(
            Prune(topic, peers, int(backoff) if proto == MESHSUB_11 else None))

    # -- heartbeat ----------------------------------------------------------------------------
    def heartbeat(self, now: float) -> None:
        self._ticks += 1
        self.score.decay(now)
        scores = {p: self.score.score(p, now) for p in self.peers}
        for st in self.peers.values():
            st.ihaves = st.asked = 0
        # broken promises
        for msg_id, (peer, deadline) in list(self.promises.items()):
            if deadline <= now:
                del self.promises[msg_id]
                if peer in self.peers:
                    self.score.add_penalty(peer)
        if self.mode != "floodsub":
            for topic in list(self.mesh):
                self._maintain(topic, now, scores)
            for topic in list(self.fanout):
                if self.fanout_last.get(topic, 0) + self.p.fanout_ttl < now:
                    del self.fanout[topic]
                    self.fanout_last.pop(topic, None)
                    continue
                members = self.fanout[topic]
                members &= {p for p in members if p in self.peers and topic in
                            self.peers[p].topics and scores.get(p, 0) >= self.th.publish}
                if len(members) < self.p.d:
                    more = [p for p in self._topic_peers(topic) if p not in members
                            and scores.get(p, 0) >= self.th.publish]
                    self.rng.shuffle(more)
                    members |= set(more[: self.p.d - len(members)])
            self._emit_gossip(now, scores)
        self.mcache.shift()
        while self.seen:
            msg_id, t = next(iter(self.seen.items()))
            if t + self.p.seen_ttl > now:
                break
            self.seen.popitem(last=False)
        for key, until in list(self.backoff.items()):
            if until <= now:
                del self.backoff[key]

    def _maintain(self, topic: str, now: float, scores: dict[bytes, float]) -> None:
        p = self.p
        members = self.mesh[topic]
        for peer in list(members):
            if peer not in self.peers or scores.get(peer, 0) < 0:
                members.discard(peer)
                self.score.prune(peer, topic, now)
                if peer in self.peers:
                    self._send_prune(peer, topic, now, p.prune_backoff, px=False)
        if len(members) < p.d_lo:
            cands = [q for q in self._topic_peers(topic) if q not in members
                     and self._mesh_candidate(q, topic, now)]
            self.rng.shuffle(cands)
            for peer in cands[: p.d - len(members)]:
                self._graft(peer, topic, now)
        elif len(members) > p.d_hi:
            ranked = sorted(members, key=lambda q: -scores.get(q, 0))
            keep = ranked[: p.d_score]
            rest = ranked[p.d_score:]
            self.rng.shuffle(rest)
            keep += rest[: p.d - len(keep)]
            outbound = [q for q in keep if self.peers[q].outbound]
            if len(outbound) < p.d_out:
                extra = [q for q in rest if self.peers[q].outbound and q not in keep]
                for q in extra[: p.d_out - len(outbound)]:
                    drop = next((k for k in reversed(keep) if not self.peers[k].outbound), None)
                    if drop is not None:
                        keep.remove(drop)
                        keep.append(q)
            for peer in members - set(keep):
                members.discard(peer)
                self.score.prune(peer, topic, now)
                self._send_prune(peer, topic, now, p.prune_backoff)
        if self._ticks % p.opportunistic_graft_ticks == 0 and len(members) > 1:
            ranked = sorted(scores.get(q, 0) for q in members)
            median = ranked[len(ranked) // 2]
            if median < self.th.opportunistic_graft:
                cands = [q for q in self._topic_peers(topic) if q not in members
                         and self._mesh_candidate(q, topic, now) and scores.get(q, 0) > median]
                self.rng.shuffle(cands)
                for peer in cands[: p.opportunistic_graft_peers]:
                    self._graft(peer, topic, now)

    def _emit_gossip(self, now: float, scores: dict[bytes, float]) -> None:
        for topic in set(self.mesh) | set(self.fanout):
            ids = self.mcache.gossip_ids(topic)
            if not ids:
                continue
            exclude = self.mesh.get(topic, set()) | self.fanout.get(topic, set())
            cands = [q for q in self._topic_peers(topic) if q not in exclude
                     and scores.get(q, 0) >= self.th.gossip]
            n = max(self.p.d_lazy, int(self.p.gossip_factor * len(cands)))
            self.rng.shuffle(cands)
            ids = ids[-self.p.max_ihave_length:]
            for peer in cands[:n]:
                self._rpc(peer).control.ihave.append((topic, list(ids)))
