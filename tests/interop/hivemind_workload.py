"""A real hivemind workload, run by the Python that has hivemind installed.

Which daemon it runs on is decided outside: hivemind starts the file
``hivemind/hivemind_cli/p2pd`` of the ``hivemind`` package it imports, and the test puts
a copy of the unmodified package first on PYTHONPATH whose ``p2pd`` is either
hivemind's own go binary or a two-line script starting ours. Prints one JSON object per
stage (``{"stage": ..., "ok": true, ...}``) and exits 0 when every stage passed.

Stages: two ``hivemind.DHT`` nodes store and get a value; ``P2P`` unary (small and
3 MiB, which hivemind sends over a stream) and streaming protobuf handlers called
across daemons; a ``hivemind.moe`` expert served by one process and called remotely;
a decentralized averaging round between three peers.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback


def report(stage: str, ok: bool, **extra) -> None:
    print(json.dumps({"stage": stage, "ok": ok, **extra}), flush=True)


def stage_dht() -> dict:
    import hivemind
    from hivemind.utils import get_dht_time

    first = hivemind.DHT(start=True)
    second = hivemind.DHT(initial_peers=first.get_visible_maddrs(), start=True)
    try:
        assert first.store("p2pd-key", "p2pd-value", expiration_time=get_dht_time() + 60)
        found = second.get("p2pd-key", latest=True)
        assert found is not None and found.value == "p2pd-value", found
        assert second.store("other", [1, 2, 3], expiration_time=get_dht_time() + 60)
        assert first.get("other", latest=True).value == [1, 2, 3]
        return {}
    finally:
        second.shutdown()
        first.shutdown()


async def _p2p_handlers() -> dict:
    from hivemind.p2p import P2P, P2PContext
    from hivemind.proto import test_pb2

    server = await P2P.create()
    client = await P2P.create(initial_peers=await server.get_visible_maddrs())
    try:

        async def square(req: test_pb2.TestRequest, ctx: P2PContext) -> test_pb2.TestResponse:
            assert ctx.remote_id == client.peer_id
            return test_pb2.TestResponse(number=req.number**2)

        async def count(req: test_pb2.TestRequest, ctx: P2PContext):
            for i in range(req.number):
                yield test_pb2.TestResponse(number=i)

        async def echo_big(req, ctx: P2PContext):
            return req

        await server.add_protobuf_handler("square", square, test_pb2.TestRequest)
        await server.add_protobuf_handler("count", count, test_pb2.TestRequest, stream_output=True)
        from hivemind.proto import runtime_pb2

        await server.add_protobuf_handler("echo_big", echo_big, runtime_pb2.ExpertRequest)

        answers = await asyncio.gather(
            *(
                client.call_protobuf_handler(
                    server.peer_id, "square", test_pb2.TestRequest(number=n), test_pb2.TestResponse
                )
                for n in range(20)
            )
        )
        assert [a.number for a in answers] == [n * n for n in range(20)]
        stream = await client.iterate_protobuf_handler(
            server.peer_id, "count", test_pb2.TestRequest(number=50), test_pb2.TestResponse
        )
        assert [r.number async for r in stream] == list(range(50))
        big = runtime_pb2.ExpertRequest(uid="x" * (3 << 20))
        back = await client.call_protobuf_handler(
            server.peer_id, "echo_big", big, runtime_pb2.ExpertRequest
        )
        assert back.uid == big.uid
        return {"unary_calls": 20, "streamed": 50, "big_bytes": len(big.uid)}
    finally:
        await client.shutdown()
        await server.shutdown()


def stage_p2p() -> dict:
    return asyncio.run(_p2p_handlers())


def stage_moe() -> dict:
    import hivemind
    import torch
    from hivemind.moe.client.expert import create_remote_experts
    from hivemind.moe.expert_uid import ExpertInfo
    from hivemind.moe.server import background_server

    with background_server(
        expert_uids=["expert.0"],
        expert_cls="ffn",
        hidden_dim=16,
        num_handlers=1,
        device="cpu",
        optim_cls=None,
    ) as server_peer_info:
        dht = hivemind.DHT(initial_peers=server_peer_info.addrs, start=True)
        try:
            (expert,) = create_remote_experts(
                [ExpertInfo(uid="expert.0", peer_id=server_peer_info.peer_id)], dht
            )
            inputs = torch.randn(3, 16, requires_grad=True)
            out = expert(inputs)
            assert out.shape == (3, 16), out.shape
            out.sum().backward()
            assert inputs.grad is not None and inputs.grad.shape == (3, 16)
            return {"output_shape": list(out.shape)}
        finally:
            dht.shutdown()


def stage_averaging() -> dict:
    import hivemind
    import torch
    from hivemind.averaging import DecentralizedAverager

    first = hivemind.DHT(start=True)
    dhts = [first] + [
        hivemind.DHT(initial_peers=first.get_visible_maddrs(), start=True) for _ in range(2)
    ]
    averagers = [
        DecentralizedAverager(
            averaged_tensors=[torch.full((8,), float(i))],
            dht=dht,
            prefix="p2pd-avg",
            target_group_size=3,
            min_group_size=3,
            min_matchmaking_time=2.0,
            request_timeout=5.0,
            start=True,
        )
        for i, dht in enumerate(dhts)
    ]
    try:
        futures = [a.step(wait=False, timeout=60) for a in averagers]
        groups = [f.result() for f in futures]
        assert all(g is not None and len(g) == 3 for g in groups), groups
        for a in averagers:
            with a.get_tensors() as tensors:
                assert torch.allclose(tensors[0], torch.full((8,), 1.0)), tensors[0]
        return {"group_size": 3}
    finally:
        for a in averagers:
            a.shutdown()
        for dht in dhts:
            dht.shutdown()


STAGES = {"dht": stage_dht, "p2p": stage_p2p, "moe": stage_moe, "averaging": stage_averaging}


def main(argv: list[str]) -> int:
    import hivemind.hivemind_cli as cli

    daemon = os.path.join(os.path.dirname(cli.__file__), "p2pd")
    with open(daemon, "rb") as f:
        head = f.read(64)
    report("daemon", True, path=daemon, script=head.startswith(b"#!"))
    failed = 0
    for name in argv or list(STAGES):
        t0 = time.monotonic()
        try:
            extra = STAGES[name]()
            report(name, True, seconds=round(time.monotonic() - t0, 2), **extra)
        except Exception as exc:
            failed += 1
            report(
                name,
                False,
                seconds=round(time.monotonic() - t0, 2),
                error=repr(exc),
                traceback=traceback.format_exc()[-3000:],
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
