"""Gossipsub v1.1 peer scoring, sans-IO (gossipsub v1.1 spec, "Peer Scoring").

score(p) = TopicCap(sum over topics t: w_t * (w1 P1 + w2 P2 + w3 P3 + w3b P3b + w4 P4))
           + w5 P5 + w6 P6 + w7 P7

* P1 time in mesh (seconds / quantum, capped), P2 first message deliveries (capped, decayed),
  P3 mesh message delivery deficit squared once the peer has been in the mesh for the
  activation window, P3b the same deficit remembered when the peer leaves the mesh,
  P4 invalid messages squared; P5 an application score; P6 IP colocation: peers sharing an
  IP beyond a threshold, squared; P7 behaviour penalty (GRAFT during backoff, broken IWANT
  promises) above a threshold, squared.
* Counters decay every ``decay_interval`` by their factor and drop to zero below
  ``decay_to_zero``. A peer's counters outlive its disconnection for ``retain_score``
  so that leaving and coming back does not wash a bad score.

Defaults: every topic uses :class:`TopicParams` defaults unless configured otherwise.
Loopback addresses are exempt from P6 by default (``ip_whitelist``), as local test networks
put every peer on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TopicParams:
    topic_weight: float = 1.0
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 300.0
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = 0.9
    first_message_deliveries_cap: float = 20.0
    mesh_message_deliveries_weight: float = 0.0  # P3 needs traffic-specific tuning: off
    mesh_message_deliveries_decay: float = 0.9
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_cap: float = 20.0
    mesh_message_deliveries_activation: float = 10.0
    mesh_message_deliveries_window: float = 0.01
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = 0.9
    invalid_message_deliveries_weight: float = -20.0
    invalid_message_deliveries_decay: float = 0.99


@dataclass(slots=True)
class ScoreParams:
    topics: dict[str, TopicParams] = field(default_factory=dict)
    default_topic: TopicParams | None = field(default_factory=TopicParams)
    topic_score_cap: float = 100.0
    app_specific_weight: float = 1.0
    app_specific_score: Callable[[bytes], float] | None = None
    ip_colocation_factor_weight: float = -10.0
    ip_colocation_factor_threshold: float = 3.0
    ip_whitelist: tuple[str, ...] = ("127.", "::1")
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 1.0
    behaviour_penalty_decay: float = 0.9
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    retain_score: float = 300.0


@dataclass(slots=True)
class Thresholds:
    """js-libp2p gossipsub's defaults."""

    gossip: float = -10.0
    publish: float = -50.0
    graylist: float = -80.0
    accept_px: float = 10.0
    opportunistic_graft: float = 20.0


@dataclass(slots=True)
class _TopicStats:
    in_mesh: bool = False
    graft_time: float = 0.0
    first_deliveries: float = 0.0
    mesh_deliveries: float = 0.0
    mesh_failure: float = 0.0
    invalid: float = 0.0


@dataclass(slots=True)
class _PeerStats:
    connected: bool = True
    expire: float = 0.0
    ips: set = field(default_factory=set)
    topics: dict[str, _TopicStats] = field(default_factory=dict)
    behaviour: float = 0.0


class PeerScore:
    def __init__(self, params: ScoreParams | None = None) -> None:
        self.params = params or ScoreParams()
        self.peers: dict[bytes, _PeerStats] = {}
        self._ip_peers: dict[str, set[bytes]] = {}
        #: msg id -> (first deliverer, time, peers that delivered it within the window)
        self._deliveries: dict[bytes, tuple[bytes, float, set[bytes]]] = {}
        self._last_decay = None

    def _tp(self, topic: str) -> TopicParams | None:
        return self.params.topics.get(topic, self.params.default_topic)

    def _stats(self, peer: bytes) -> _PeerStats:
        st = self.peers.get(peer)
        if st is None:
            st = self.peers[peer] = _PeerStats()
        return st

    def _topic(self, peer: bytes, topic: str) -> _TopicStats | None:
        if self._tp(topic) is None:
            return None
        st = self._stats(peer)
        ts = st.topics.get(topic)
        if ts is None:
            ts = st.topics[topic] = _TopicStats()
        return ts

    # -- events -------------------------------------------------------------------------------
    def add_peer(self, peer: bytes, ip: str | None = None) -> None:
        st = self._stats(peer)
        st.connected = True
        if ip:
            st.ips.add(ip)
            self._ip_peers.setdefault(ip, set()).add(peer)

    def remove_peer(self, peer: bytes, now: float) -> None:
        st = self.peers.get(peer)
        if st is None:
            return
        for ip in st.ips:
            peers = self._ip_peers.get(ip)
            if peers:
                peers.discard(peer)
                if not peers:
                    del self._ip_peers[ip]
        if self.score(peer, now) > 0:  # nothing to remember
            del self.peers[peer]
            return
        st.connected = False
        st.expire = now + self.params.retain_score
        for topic, ts in st.topics.items():
            self._leave_mesh(ts, topic, now)

    def graft(self, peer: bytes, topic: str, now: float) -> None:
        ts = self._topic(peer, topic)
        if ts is not None:
            ts.in_mesh, ts.graft_time = True, now

    def prune(self, peer: bytes, topic: str, now: float) -> None:
        ts = self._topic(peer, topic)
        if ts is not None:
            self._leave_mesh(ts, topic, now)

    def _leave_mesh(self, ts: _TopicStats, topic: str, now: float) -> None:
        """P3b: a peer leaving the mesh with a delivery deficit (once P3 was active for
        it) keeps that deficit, squared, as a decaying penalty."""
        tp = self._tp(topic)
        if ts.in_mesh and tp is not None \
                and now - ts.graft_time >= tp.mesh_message_deliveries_activation \
                and ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
            deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
            ts.mesh_failure += deficit * deficit
        ts.in_mesh = False

    def add_penalty(self, peer: bytes, amount: float = 1.0) -> None:
        self._stats(peer).behaviour += amount

    def validated(self, peer: bytes, msg_id: bytes, topic: str, now: float) -> None:
        """``peer`` delivered a valid message first."""
        ts = self._topic(peer, topic)
        tp = self._tp(topic)
        if ts is not None:
            ts.first_deliveries = min(tp.first_message_deliveries_cap, ts.first_deliveries + 1)
            if ts.in_mesh:
                ts.mesh_deliveries = min(tp.mesh_message_deliveries_cap, ts.mesh_deliveries + 1)
        self._deliveries[msg_id] = (peer, now, {peer})

    def duplicate(self, peer: bytes, msg_id: bytes, topic: str, now: float) -> None:
        """``peer`` delivered a message we already had: counts for P3 within the window."""
        rec = self._deliveries.get(msg_id)
        tp = self._tp(topic)
        if rec is None or tp is None or peer in rec[2]:
            return
        rec[2].add(peer)
        ts = self._topic(peer, topic)
        if ts is not None and ts.in_mesh and now - rec[1] <= tp.mesh_message_deliveries_window:
            ts.mesh_deliveries = min(tp.mesh_message_deliveries_cap, ts.mesh_deliveries + 1)

    def rejected(self, peer: bytes, topic: str) -> None:
        """``peer`` sent an invalid message (bad signature, rejected by validation)."""
        ts = self._topic(peer, topic)
        if ts is not None:
            ts.invalid += 1

    # -- the score ----------------------------------------------------------------------------
    def score(self, peer: bytes, now: float) -> float:
        st = self.peers.get(peer)
        if st is None:
            return 0.0
        p = self.params
        total = 0.0
        for topic, ts in st.topics.items():
            tp = self._tp(topic)
            if tp is None:
                continue
            s = 0.0
            if ts.in_mesh:
                t = (now - ts.graft_time) / tp.time_in_mesh_quantum
                s += tp.time_in_mesh_weight * min(t, tp.time_in_mesh_cap)
            s += tp.first_message_deliveries_weight * ts.first_deliveries
            if ts.in_mesh and now - ts.graft_time >= tp.mesh_message_deliveries_activation \
                    and ts.mesh_deliveries < tp.mesh_message_deliveries_threshold:
                deficit = tp.mesh_message_deliveries_threshold - ts.mesh_deliveries
                s += tp.mesh_message_deliveries_weight * deficit * deficit
            s += tp.mesh_failure_penalty_weight * ts.mesh_failure
            s += tp.invalid_message_deliveries_weight * ts.invalid * ts.invalid
            total += tp.topic_weight * s
        if p.topic_score_cap > 0:
            total = min(total, p.topic_score_cap)
        if p.app_specific_score is not None:
            total += p.app_specific_weight * p.app_specific_score(peer)
        for ip in st.ips:
            if ip.startswith(p.ip_whitelist):
                continue
            n = len(self._ip_peers.get(ip, ()))
            if n > p.ip_colocation_factor_threshold:
                surplus = n - p.ip_colocation_factor_threshold
                total += p.ip_colocation_factor_weight * surplus * surplus
        if st.behaviour > p.behaviour_penalty_threshold:
            excess = st.behaviour - p.behaviour_penalty_threshold
            total += p.behaviour_penalty_weight * excess * excess
        return total

    def decay(self, now: float) -> None:
        """Call every heartbeat; applies as many decay intervals as have passed."""
        if self._last_decay is None:
            self._last_decay = now
            return
        p = self.params
        while now - self._last_decay >= p.decay_interval:
            self._last_decay += p.decay_interval
            for peer, st in list(self.peers.items()):
                if not st.connected and st.expire <= now:
                    del self.peers[peer]
                    continue
                for topic, ts in st.topics.items():
                    tp = self._tp(topic)
                    if tp is None:
                        continue
                    ts.first_deliveries = _dz(ts.first_deliveries
                                              * tp.first_message_deliveries_decay, p)
                    ts.mesh_deliveries = _dz(ts.mesh_deliveries
                                             * tp.mesh_message_deliveries_decay, p)
                    ts.mesh_failure = _dz(ts.mesh_failure * tp.mesh_failure_penalty_decay, p)
                    ts.invalid = _dz(ts.invalid * tp.invalid_message_deliveries_decay, p)
                st.behaviour = _dz(st.behaviour * p.behaviour_penalty_decay, p)
        for msg_id, rec in list(self._deliveries.items()):
            if now - rec[1] > 120:
                del self._deliveries[msg_id]
            else:
                break


def _dz(value: float, p: ScoreParams) -> float:
    return 0.0 if abs(value) < p.decay_to_zero else value
