"""The native SHA-256 core against hashlib, on every implementation this machine runs.

``implementations()`` gives hashlib (the fallback path) and the C core's portable
path, plus the SHA-extensions path where CPUID reports it; every test runs on each,
so the fallback and native paths are proven to agree.
"""

import hashlib
import os
import random
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd import native

IMPLS = native.implementations()


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def ref(data) -> bytes:
    return hashlib.sha256(data).digest()


# FIPS 180-4 examples (NIST CSRC "SHA256.pdf") and the NIST long-message vector.
NIST = [
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
     b"klmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]


def test_machine_reports_its_implementations():
    assert "hashlib" in IMPLS
    if native.BACKEND == "native":
        assert "portable" in IMPLS
        assert native.SHA256_IMPL in IMPLS


@pytest.mark.parametrize("msg,hexdigest", NIST, ids=range(len(NIST)))
def test_nist_vectors(impl, msg, hexdigest):
    assert impl.sha256(msg).hex() == hexdigest
    assert [d.hex() for d in impl.sha256_many([msg, msg])] == [hexdigest, hexdigest]


def test_every_length_up_to_1024(impl):
    data = bytes(random.Random(1).randrange(256) for _ in range(1025))
    msgs = [data[:n] for n in range(1025)]
    want = [ref(m) for m in msgs]
    assert [impl.sha256(m) for m in msgs] == want
    assert impl.sha256_many(msgs) == want
    # Pairs of different lengths exercise the two-stream path's lockstep and tails.
    shuffled = msgs[:]
    random.Random(2).shuffle(shuffled)
    assert impl.sha256_many(shuffled) == [ref(m) for m in shuffled]


def test_random_lengths_to_4mib(impl):
    rnd = random.Random(3)
    msgs = [rnd.randbytes(rnd.randrange(4 << 20)) for _ in range(6)]
    assert [impl.sha256(m) for m in msgs] == [ref(m) for m in msgs]
    assert impl.sha256_many(msgs) == [ref(m) for m in msgs]


@pytest.mark.parametrize("n", [1, 2, 3, 17, 5000])
def test_batches_of_short_messages(impl, n):
    rnd = random.Random(n)
    msgs = [rnd.randbytes(rnd.randrange(200)) for _ in range(n)]
    assert impl.sha256_many(msgs) == [ref(m) for m in msgs]


def test_batch_big_enough_to_split_across_threads(impl):
    rnd = random.Random(4)
    small = [rnd.randbytes(rnd.randrange(2000)) for _ in range(3000)]
    large = [rnd.randbytes(rnd.randrange(5000, 300_000)) for _ in range(20)]
    assert impl.sha256_many(small) == [ref(m) for m in small]
    assert impl.sha256_many(large) == [ref(m) for m in large]


def test_batch_accepts_every_buffer_kind(impl):
    wide = memoryview(bytes(range(256)) * 4).cast("I")  # 256 items, 1024 bytes
    bufs = [b"abc", bytearray(b"defg"), memoryview(b"xyz123")[1:4], wide, b""]
    assert impl.sha256_many(bufs) == [ref(b) for b in bufs]
    assert impl.sha256_many([wide, b"x" * 5000]) == [ref(wide), ref(b"x" * 5000)]
    assert impl.sha256(wide) == ref(wide)


def test_empty_batch(impl):
    assert impl.sha256_many([]) == []
    assert impl.sha256_mismatches([], []) == []
    assert impl.sha256_chunks(b"", 262144) == []


@pytest.mark.parametrize("chunk", [1, 63, 64, 65, 1000, 262144, 1 << 30])
def test_chunks(impl, chunk):
    data = random.Random(chunk).randbytes(1_000_003)
    mv = memoryview(data)
    want = [ref(mv[i : i + chunk]) for i in range(0, len(data), chunk)]
    assert impl.sha256_chunks(data, chunk) == want
    assert impl.sha256_chunks(bytearray(data), chunk) == want


@pytest.mark.parametrize("chunk", [0, -1])
def test_chunks_refuse_a_nonpositive_size(impl, chunk):
    with pytest.raises(ValueError, match="chunk size"):
        impl.sha256_chunks(b"abc", chunk)


def test_mismatches(impl):
    rnd = random.Random(5)
    blocks = [rnd.randbytes(rnd.randrange(1, 300_000)) for _ in range(40)]
    digests = [ref(b) for b in blocks]
    assert impl.sha256_mismatches(digests, blocks) == []
    bad = sorted(rnd.sample(range(40), 7))
    for i in bad:
        digests[i] = bytes(32 - 1) + b"\x01"
    assert impl.sha256_mismatches(digests, blocks) == bad


def test_mismatches_refuse_bad_arguments(impl):
    with pytest.raises(ValueError, match="digests for"):
        impl.sha256_mismatches([ref(b"a")], [b"a", b"b"])
    if impl.name != "hashlib":
        with pytest.raises(ValueError, match="32 bytes"):
            impl.sha256_mismatches([b"short"], [b"a"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=40), st.integers(1, 5000))
def test_property_all_implementations_agree(msgs, chunk):
    joined = b"".join(msgs)
    for im in IMPLS.values():
        assert im.sha256_many(msgs) == [ref(m) for m in msgs]
        assert im.sha256_chunks(joined, chunk) == IMPLS["hashlib"].sha256_chunks(joined, chunk)


@pytest.mark.skipif(native.BACKEND != "native", reason="the C core is not built here")
def test_gil_is_released_during_a_call():
    """A Python thread keeps running while another thread is inside a long C hash."""
    data = bytes(64 << 20)
    portable = IMPLS["portable"]
    done = threading.Event()
    ticks = 0

    def hash_it():
        portable.sha256(data)
        done.set()

    worker = threading.Thread(target=hash_it)
    started = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
    worker.join()
    assert time.perf_counter() - started > 0.02  # the call really took a while
    assert ticks > 1000


def _probe(env: dict) -> subprocess.CompletedProcess:
    code = ("from p2pd import native; "
            "print(native.BACKEND, native.SHA256_IMPL, native.sha256(b'abc').hex())")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=True)


def test_fallback_when_native_is_disabled():
    out = _probe({"P2PD_NATIVE": "0"})
    assert out.stdout.split() == ["fallback", "hashlib", NIST[0][1]]
    lines = [ln for ln in out.stderr.splitlines() if "native core unavailable" in ln]
    assert len(lines) == 1 and "hashlib" in lines[0]


@pytest.mark.skipif(native.BACKEND != "native", reason="the C core is not built here")
def test_portable_path_forced_by_environment():
    out = _probe({"P2PD_SHA256": "portable"})
    assert out.stdout.split() == ["native", "portable", NIST[0][1]]
    assert out.stderr == ""
