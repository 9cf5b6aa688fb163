"""Gossipsub v1.1 peer scoring: each parameter's effect, decay, retention, thresholds."""

import pytest

from p2pd.gossip.score import PeerScore, ScoreParams, TopicParams

A, B, C, D = b"a", b"b", b"c", b"d"


def test_time_in_mesh_and_first_deliveries_raise_the_score_up_to_their_caps():
    s = PeerScore()
    s.add_peer(A)
    s.graft(A, "t", 0.0)
    assert s.score(A, 10.0) == pytest.approx(0.1)  # P1: 0.01 per second
    for i in range(50):
        s.validated(A, b"m%d" % i, "t", 10.0)
    assert s.score(A, 10.0) == pytest.approx(0.1 + 20.0)  # P2 capped at 20
    assert s.score(A, 10**6) == pytest.approx(3.0 + 20.0)  # P1 capped at 300 s


def test_invalid_messages_are_squared_and_decay_slowly():
    s = PeerScore()
    s.add_peer(A)
    s.rejected(A, "t")
    assert s.score(A, 0) == -20
    s.rejected(A, "t")
    s.rejected(A, "t")
    assert s.score(A, 0) == -180  # 3^2 x -20: below the graylist threshold (-80)
    s.decay(0.0)
    s.decay(100.0)  # 100 intervals at 0.99
    assert -180 < s.score(A, 100.0) < -20  # (3 x 0.99^100)^2 x -20 = -24


def test_ip_colocation_beyond_the_threshold_but_not_on_loopback():
    s = PeerScore()
    for p in (A, B, C, D):
        s.add_peer(p, "10.0.0.1")
    assert s.score(A, 0) == -10  # 4 peers, threshold 3: (4-3)^2 x -10
    s2 = PeerScore()
    for p in (A, B, C, D):
        s2.add_peer(p, "127.0.0.1")
    assert s2.score(A, 0) == 0


def test_behaviour_penalty_and_app_score():
    s = PeerScore(ScoreParams(app_specific_score=lambda p: 5.0 if p == B else 0.0))
    s.add_peer(A)
    s.add_peer(B)
    s.add_penalty(A, 3)
    assert s.score(A, 0) == -40  # (3-1)^2 x -10
    assert s.score(B, 0) == 5.0


def test_mesh_delivery_deficit_and_failure_penalty_when_enabled():
    tp = TopicParams(mesh_message_deliveries_weight=-1.0, mesh_message_deliveries_threshold=4,
                     mesh_message_deliveries_activation=5.0, mesh_failure_penalty_weight=-1.0,
                     time_in_mesh_weight=0.0)
    s = PeerScore(ScoreParams(default_topic=tp))
    s.add_peer(A)
    s.graft(A, "t", 0.0)
    assert s.score(A, 1.0) == 0  # not active yet
    s.validated(A, b"x", "t", 1.0)
    assert s.score(A, 6.0) == pytest.approx(1 - 9)  # P2 +1, P3 deficit 3^2 x -1
    s.prune(A, "t", 6.0)
    assert s.score(A, 6.0) == pytest.approx(1 - 9)  # P3b remembers the deficit


def test_a_bad_score_survives_reconnecting_for_a_while():
    s = PeerScore()
    s.add_peer(A)
    s.rejected(A, "t")
    s.remove_peer(A, 0.0)
    s.add_peer(A)
    assert s.score(A, 1.0) < 0
    s2 = PeerScore()
    s2.add_peer(B)
    s2.rejected(B, "t")
    s2.remove_peer(B, 0.0)
    s2.decay(0.0)
    s2.decay(400.0)  # past retain_score: forgotten
    assert B not in s2.peers
