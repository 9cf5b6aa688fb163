"""Ed25519 verification: the native core vs a PyNaCl (libsodium) verify loop.

Both sides verify the same honest signatures (random keys and messages of 32-160 bytes),
in alternating runs, best of several. Rows:
- single verify: our ``verify`` per signature vs ``VerifyKey.verify`` per signature;
- batch of 64, one thread: per-signature time of ``verify_batch`` on 64 at a time;
- batch of 1024 over two threads: ``verify_batch`` with two threads.
"""

import os
import random
from collections.abc import Iterable

import nacl.signing

from bench.common import best_of_alternating, row
from p2pd import native


def run(quick: bool) -> Iterable[dict]:
    impls = native.ed25519_implementations(threads=1)
    if "native" not in impls:
        raise SystemExit("the ed25519 benchmark needs the native core (pip install -e . builds it)")
    one = impls["native"]
    two = native.ed25519_implementations(threads=2)["native"]
    rnd = random.Random(1)
    n = 256 if quick else 1024
    sks = [nacl.signing.SigningKey(rnd.randbytes(32)) for _ in range(32)]
    items = []
    for i in range(n):
        sk = sks[i % len(sks)]
        msg = os.urandom(32 + i % 128)
        items.append((bytes(sk.verify_key), msg, sk.sign(msg).signature))
    vks = [nacl.signing.VerifyKey(pk) for pk, _, _ in items]
    assert one.verify_batch(items) == [True] * n

    def pynacl_loop() -> None:
        for vk, (_, msg, sig) in zip(vks, items, strict=True):
            vk.verify(msg, sig)

    def single() -> None:
        verify = one.verify
        for pk, msg, sig in items:
            verify(pk, msg, sig)

    def batch64() -> None:
        for i in range(0, n, 64):
            one.verify_batch(items[i : i + 64])

    def batch_two_threads() -> None:
        two.verify_batch(items)

    repeat = 3 if quick else 7
    theirs, t_single, t_b64, t_b2 = best_of_alternating(
        [pynacl_loop, single, batch64, batch_two_threads], repeat)
    peer = "PyNaCl (libsodium) VerifyKey.verify loop"
    per = 1e6 / n
    yield row("ed25519", "single_verify_us_per_sig", t_single * per, "us", peer, theirs * per,
              higher_is_better=False)
    yield row("ed25519", "batch64_1_thread_us_per_sig", t_b64 * per, "us", peer, theirs * per,
              higher_is_better=False)
    yield row("ed25519", f"batch{n}_2_threads_us_per_sig", t_b2 * per, "us", peer, theirs * per,
              higher_is_better=False)
