"""STATUS "Runtime": the daemon's trio tasks, open fds and RSS, as the soak samples them.

Held control clients each cost the daemon a socket and a task; the counts follow them up
and back down once they leave, and the RSS matches what the kernel reports."""

from __future__ import annotations

import time

import psutil
from test_daemon_harness import Daemon

from p2pd.cli.client import ControlClient
from p2pd.control.endpoint import parse_endpoint
from p2pd.proto import daemon_pb2 as pb

HELD = 20


def _runtime(client: ControlClient) -> dict:
    return client.status()["Runtime"]


def _settle(client: ControlClient, want, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while not want(rt := _runtime(client)):
        assert time.monotonic() < deadline, rt
        time.sleep(0.05)
    return rt


def test_status_runtime_counts_tasks_and_fds_that_follow_held_clients_up_and_down():
    with Daemon("-pubsub") as d:
        client = ControlClient(parse_endpoint(d.control), timeout=10)
        before = _runtime(client)
        kernel = psutil.Process(d.proc.pid)
        assert before["Tasks"] > 5 and before["Fds"] > 3 and before["Threads"] >= 1
        assert before["PyBlocks"] > 10_000
        assert abs(before["RSS"] - kernel.memory_info().rss) < 8 << 20
        assert abs(before["Fds"] - kernel.num_fds()) <= 2
        held = []
        for i in range(HELD):  # subscriptions stay open until their client goes
            sock = client._connect()
            client._exchange(sock, pb.Request(type=pb.Request.PUBSUB, pubsub=pb.PSRequest(
                type=pb.PSRequest.SUBSCRIBE, topic=f"t{i}")))
            held.append(sock)
        during = _settle(client, lambda rt: rt["Fds"] >= before["Fds"] + HELD)
        assert during["Tasks"] >= before["Tasks"] + HELD
        for sock in held:
            sock.close()
        _settle(client, lambda rt: rt["Fds"] <= before["Fds"] + 1
                and rt["Tasks"] <= before["Tasks"] + 2)


def test_disconnects_from_a_pubsub_peer_leave_no_tasks_behind():
    # An idle gossip writer waited on an event nothing set once its peer was dropped: each
    # disconnect left one task (the soak: ~100 more tasks in ten minutes of reconnects).
    with Daemon("-pubsub") as a, Daemon("-pubsub") as b:
        ca = ControlClient(parse_endpoint(a.control), timeout=10)
        peer, addrs = ControlClient(parse_endpoint(b.control), timeout=10).identify()
        ca.connect(peer, addrs)
        time.sleep(1.0)  # identify, the pubsub streams both ways
        before = _runtime(ca)["Tasks"]
        for _ in range(15):
            ca.disconnect(peer)
            ca.connect(peer, addrs)
        time.sleep(1.0)
        _settle(ca, lambda rt: rt["Tasks"] <= before + 3)
