"""SHA-256: the native core (best implementation on this CPU) vs a hashlib loop.

hashlib is OpenSSL's SHA-256 (itself SHA-extensions code on this kind of CPU), called
once per message from Python, which is what code without a batch call does. Every
figure is the best of several runs, ours and the peer's alternating, on the same messages.

Rows:
- batch of 64-byte and of 1 KiB messages, our one batch call (threads as on a normal
  start) vs the hashlib loop;
- 256 KiB buffers (the UnixFS chunk size): one buffer per call vs hashlib per buffer;
  a batch on one thread; a batch split across two threads (the GIL released).
"""

import hashlib
from collections.abc import Iterable

from bench.common import best_of_alternating, row
from p2pd import native

MiB = 1 << 20


def _hashlib_loop(msgs: list[bytes]) -> None:
    sha = hashlib.sha256
    for m in msgs:
        sha(m).digest()


def run(quick: bool) -> Iterable[dict]:
    impls = native.implementations()
    ours = impls.get("shani") or impls.get("portable")
    if ours is None:
        raise SystemExit("the hash benchmark needs the native core (pip install -e . builds it)")
    one_thread = native.implementations(threads=1)[ours.name]
    two_threads = native.implementations(threads=2)[ours.name]
    peer = "hashlib (OpenSSL) loop"
    repeat = 3 if quick else 15

    for size, count in ((64, 20_000), (1024, 10_000)):
        if quick:
            count //= 10
        msgs = [bytes([i % 251]) * size for i in range(count)]
        assert ours.sha256_many(msgs) == [hashlib.sha256(m).digest() for m in msgs]
        theirs, mine = best_of_alternating(
            [lambda msgs=msgs: _hashlib_loop(msgs), lambda msgs=msgs: ours.sha256_many(msgs)],
            repeat)
        label = "64B" if size == 64 else "1KiB"
        yield row("hash", f"batch_{label}_msgs_per_s ({ours.name})", count / mine, "msg/s",
                  peer, count / theirs)

    count = 16 if quick else 64
    bufs = [bytes([i]) * (256 * 1024) for i in range(count)]
    mb = count * 256 * 1024 / MiB
    theirs, single, batch1, batch2 = best_of_alternating([
        lambda: _hashlib_loop(bufs),
        lambda: [ours.sha256(b) for b in bufs],
        lambda: one_thread.sha256_many(bufs),
        lambda: two_threads.sha256_many(bufs),
    ], repeat)
    for metric, secs in (("single_call", single), ("batch_1_thread", batch1),
                         ("batch_2_threads", batch2)):
        yield row("hash", f"256KiB_{metric}_MBps ({ours.name})", mb / secs, "MB/s",
                  peer, mb / theirs)
