"""Measured inside hivemind's venv (bench/hivemind.py starts it): prints one JSON object.

Two ``P2P`` instances (two daemons): unary protobuf calls/s with 16 in flight; MiB/s of a
streaming handler sending 4 MiB tensor-sized messages; then two ``hivemind.DHT`` nodes:
store+get round trips/s. Which daemon runs is decided by the ``hivemind`` package on
PYTHONPATH (tests/harness/hivemind_env.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

TENSOR = 4 << 20


async def p2p_rates(seconds: float) -> dict:
    from hivemind.p2p import P2P, P2PContext
    from hivemind.proto import runtime_pb2, test_pb2

    server = await P2P.create()
    client = await P2P.create(initial_peers=await server.get_visible_maddrs())
    try:

        async def echo(req: test_pb2.TestRequest, ctx: P2PContext) -> test_pb2.TestResponse:
            return test_pb2.TestResponse(number=req.number)

        blob = runtime_pb2.Tensor(buffer=b"\x01" * TENSOR, size=[TENSOR], dtype="uint8")

        async def tensors(req: test_pb2.TestRequest, ctx: P2PContext):
            for _ in range(req.number):
                yield runtime_pb2.ExpertResponse(tensors=[blob])

        await server.add_protobuf_handler("echo", echo, test_pb2.TestRequest)
        await server.add_protobuf_handler(
            "tensors", tensors, test_pb2.TestRequest, stream_output=True
        )
        calls = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal calls
            while time.perf_counter() < deadline:
                await client.call_protobuf_handler(
                    server.peer_id, "echo", test_pb2.TestRequest(number=1), test_pb2.TestResponse
                )
                calls += 1

        await client.call_protobuf_handler(  # warm: connection and handler
            server.peer_id, "echo", test_pb2.TestRequest(number=1), test_pb2.TestResponse
        )
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        unary = calls / (time.perf_counter() - t0)

        count = 8
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            got = 0
            stream = await client.iterate_protobuf_handler(
                server.peer_id,
                "tensors",
                test_pb2.TestRequest(number=count),
                runtime_pb2.ExpertResponse,
            )
            async for msg in stream:
                got += len(msg.tensors[0].buffer)
            assert got == count * TENSOR
            best = max(best, got / (1 << 20) / (time.perf_counter() - t0))
        return {"unary_per_s": unary, "stream_mib_per_s": best}
    finally:
        await client.shutdown()
        await server.shutdown()


def dht_rate(seconds: float) -> float:
    import hivemind
    from hivemind.utils import get_dht_time

    first = hivemind.DHT(start=True)
    second = hivemind.DHT(initial_peers=first.get_visible_maddrs(), start=True)
    try:
        assert first.store("warm", 0, expiration_time=get_dht_time() + 600)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            key = f"bench-{n}"
            assert first.store(key, n, expiration_time=get_dht_time() + 600)
            assert second.get(key, latest=True).value == n
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        second.shutdown()
        first.shutdown()


def main(seconds: float) -> None:
    out = asyncio.run(p2p_rates(seconds))
    out["dht_store_get_per_s"] = dht_rate(seconds)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
