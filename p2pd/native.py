"""The Python face of the native core (``p2pd._native``); the only module that touches it.

SHA-256 calls: one buffer (:func:`sha256`), a batch of buffers (:func:`sha256_many`),
one buffer cut into fixed-size chunks (:func:`sha256_chunks`, the UnixFS importer's
hot path) and a batch CID check (:func:`sha256_mismatches`). Ed25519: :func:`verify`
and :func:`verify_batch` under one rule set (docs/ed25519.md). cffi releases the GIL
around every C call; large batches are also split across threads.

Which implementation runs:

* the C core with the x86 SHA-extensions path when CPUID reports it, else its
  portable C path;
* ``P2PD_SHA256=portable`` forces the portable C path (CI runs the suite that way too);
* ``P2PD_NATIVE=0``, or a package installed without the extension, uses hashlib,
  with one log line saying so.

:func:`implementations` returns every implementation this machine can run, so tests
can prove they agree.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import struct
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

log = logging.getLogger("p2pd.native")

Buffer = bytes | bytearray | memoryview

try:
    if os.environ.get("P2PD_NATIVE") == "0":
        raise ImportError("disabled by P2PD_NATIVE=0")
    from p2pd._native import ffi as _ffi
    from p2pd._native import lib as _lib
except ImportError as exc:  # pragma: no cover - exercised by the fallback test run
    _ffi = _lib = None
    log.warning("native core unavailable (%s): hashing with hashlib, signatures with PyNaCl "
                "(slower)", exc)

#: "native" when the C core is loaded, else "fallback".
BACKEND = "native" if _lib is not None else "fallback"

# Batches smaller than this much work (bytes plus 64 per message) stay on one thread.
_SPLIT_WORK = 512 * 1024
# Batches whose first message is at most this long are packed into one buffer for the
# batch call (one copy, no per-message pointer object); longer ones go by pointer.
_PACK_MAX = 4096


_ROW = 256
_ROWS = struct.Struct("32s" * _ROW)


@lru_cache(maxsize=_ROW)
def _splitter(n: int) -> struct.Struct:
    return struct.Struct("32s" * n)


def _split_digests(out: bytes, n: int) -> list[bytes]:
    """``out`` (32 * n bytes) as n digests: struct unpacking makes the bytes objects in C."""
    full = n - n % _ROW
    digests = list(itertools.chain.from_iterable(_ROWS.iter_unpack(memoryview(out)[: 32 * full])))
    if full < n:
        digests += _splitter(n - full).unpack_from(out, 32 * full)
    return digests


_pool: ThreadPoolExecutor | None = None


def _default_threads() -> int:
    try:
        return max(1, int(os.environ.get("P2PD_NATIVE_THREADS", "")))
    except ValueError:
        return min(os.cpu_count() or 1, 8)


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_default_threads(), thread_name_prefix="p2pd-native")
    return _pool


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(n, i + step)) for i in range(0, n, step)]


class HashlibSha256:
    """SHA-256 through hashlib: the fallback, and the reference the tests compare against."""

    name = "hashlib"

    def sha256(self, data: Buffer) -> bytes:
        return hashlib.sha256(data).digest()

    def sha256_many(self, bufs: Sequence[Buffer]) -> list[bytes]:
        return [hashlib.sha256(b).digest() for b in bufs]

    def sha256_chunks(self, data: Buffer, chunk_size: int) -> list[bytes]:
        _check_chunk(chunk_size)
        mv = memoryview(data).cast("B")
        step = range(0, len(mv), chunk_size)
        return [hashlib.sha256(mv[i : i + chunk_size]).digest() for i in step]

    def sha256_mismatches(self, digests: Sequence[bytes], blocks: Sequence[Buffer]) -> list[int]:
        if len(digests) != len(blocks):
            raise ValueError(f"{len(digests)} digests for {len(blocks)} blocks")
        pairs = enumerate(zip(digests, blocks, strict=True))
        return [i for i, (d, b) in pairs if hashlib.sha256(b).digest() != d]


def _check_chunk(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk size must be positive, not {chunk_size}")


def _nbytes(b: Buffer) -> int:
    return b.nbytes if isinstance(b, memoryview) else len(b)


def _split(n: int, work: int, threads: int, call: Callable[[int, int], None]) -> None:
    """Run ``call(a, b)`` over [0, n): in one piece, or one piece per thread when it is big."""
    parts = _ranges(n, threads) if work >= _SPLIT_WORK and n > 1 and threads > 1 else [(0, n)]
    jobs = [_executor().submit(call, a, b) for a, b in parts[1:]]
    call(*parts[0])
    for job in jobs:
        job.result()


class NativeSha256:
    """SHA-256 through the C core, with one fixed implementation (see ``p2pd_native.h``)."""

    def __init__(self, impl: int, name: str, threads: int | None = None) -> None:
        self.impl = impl
        self.name = name
        #: Threads a large batch is split across (the GIL is released in C).
        self.threads = threads or _default_threads()

    def sha256(self, data: Buffer) -> bytes:
        out = _ffi.new("uint8_t[32]")
        src = _ffi.from_buffer("uint8_t[]", data)
        _lib.p2pd_sha256(self.impl, src, len(src), out)
        return _ffi.buffer(out)[:]

    def sha256_many(self, bufs: Sequence[Buffer]) -> list[bytes]:
        n = len(bufs)
        if n == 0:
            return []
        if _nbytes(bufs[0]) > _PACK_MAX:
            return _split_digests(self._by_pointer(bufs), n)
        # Short messages: one copy into a packed buffer beats a pointer object per message.
        data = b"".join(bufs)
        lens = array("Q", map(len, bufs))  # items, not bytes, for a wide memoryview: fixed below
        lp = _ffi.from_buffer("uint64_t[]", lens)
        if _lib.p2pd_sum_u64(lp, n) != len(data):
            lens = array("Q", map(_nbytes, bufs))
            lp = _ffi.from_buffer("uint64_t[]", lens)
        src = _ffi.from_buffer("uint8_t[]", data)
        out = bytearray(32 * n)
        dst = _ffi.from_buffer("uint8_t[]", out)
        _split(n, len(data) + 64 * n, self.threads, lambda a, b: _lib.p2pd_sha256_packed(
            self.impl, src + _lib.p2pd_sum_u64(lp, a), lp + a, b - a, dst + 32 * a))
        return _split_digests(out, n)

    def _by_pointer(self, bufs: Sequence[Buffer]) -> bytes:
        n = len(bufs)
        keep = [_ffi.from_buffer("uint8_t[]", b) for b in bufs]
        ptrs = _ffi.new("uint8_t *[]", keep)
        lens = [len(k) for k in keep]
        lp = _ffi.new("size_t[]", lens)
        out = _ffi.new("uint8_t[]", 32 * n)
        _split(n, sum(lens) + 64 * n, self.threads, lambda a, b: _lib.p2pd_sha256_ptrs(
            self.impl, ptrs + a, lp + a, b - a, out + 32 * a))
        del keep
        return _ffi.buffer(out)[:]

    def sha256_chunks(self, data: Buffer, chunk_size: int) -> list[bytes]:
        _check_chunk(chunk_size)
        src = _ffi.from_buffer("uint8_t[]", data)
        n = -(-len(src) // chunk_size)
        if n == 0:
            return []
        out = _ffi.new("uint8_t[]", 32 * n)
        _lib.p2pd_sha256_chunks(self.impl, src, len(src), chunk_size, out)
        return _split_digests(_ffi.buffer(out)[:], n)

    def sha256_mismatches(self, digests: Sequence[bytes], blocks: Sequence[Buffer]) -> list[int]:
        n = len(blocks)
        if len(digests) != n:
            raise ValueError(f"{len(digests)} digests for {n} blocks")
        if n == 0:
            return []
        want = b"".join(digests)
        if len(want) != 32 * n or any(len(d) != 32 for d in digests):
            raise ValueError("every digest must be 32 bytes")
        keep = [_ffi.from_buffer("uint8_t[]", b) for b in blocks]
        ptrs = _ffi.new("uint8_t *[]", keep)
        lens = [len(k) for k in keep]
        lp = _ffi.new("size_t[]", lens)
        wp = _ffi.from_buffer("uint8_t[]", want)
        scratch = _ffi.new("uint8_t[]", 32 * n)
        bad = _ffi.new("uint32_t[]", n)
        found: dict[int, int] = {}

        def check(a: int, b: int) -> None:
            found[a] = _lib.p2pd_sha256_mismatches(
                self.impl, ptrs + a, lp + a, wp + 32 * a, b - a, scratch + 32 * a, bad + a)

        _split(n, sum(lens) + 64 * n, self.threads, check)
        del keep
        return sorted(a + bad[a + j] for a, count in found.items() for j in range(count))


def implementations(threads: int | None = None) -> dict[str, HashlibSha256 | NativeSha256]:
    """Every SHA-256 implementation this machine can run, by name.

    ``threads`` caps how many threads the native ones split a large batch across.
    """
    found: dict[str, HashlibSha256 | NativeSha256] = {"hashlib": HashlibSha256()}
    if _lib is not None:
        found["portable"] = NativeSha256(1, "portable", threads)
        if _lib.p2pd_sha256_best() == 2:
            found["shani"] = NativeSha256(2, "shani", threads)
    return found


def _default() -> HashlibSha256 | NativeSha256:
    impls = implementations()
    if _lib is None:
        return impls["hashlib"]
    forced = os.environ.get("P2PD_SHA256", "").strip().lower()
    if forced and forced in impls:
        return impls[forced]
    if forced:
        log.warning("P2PD_SHA256=%s is not available here (have: %s); using the best",
                    forced, ", ".join(impls))
    return impls.get("shani") or impls["portable"]


_impl = _default()
#: Name of the SHA-256 implementation in use: "shani", "portable" or "hashlib".
SHA256_IMPL = _impl.name

sha256 = _impl.sha256
sha256_many = _impl.sha256_many
sha256_chunks = _impl.sha256_chunks
sha256_mismatches = _impl.sha256_mismatches


# -- Ed25519 verification -------------------------------------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_Y_MASK = (1 << 255) - 1
_Y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
#: y of the points of order 1, 2, 4 and 8 (either sign of x).
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y8, _P - _Y8})


def _rule_set_allows(pubkey: bytes, sig: bytes) -> bool:
    """Rules 1-4 of docs/ed25519.md that need no curve arithmetic (the fallback's pre-check)."""
    if len(pubkey) != 32 or len(sig) != 64:
        return False
    if int.from_bytes(sig[32:], "little") >= _L:
        return False
    for enc in (pubkey, sig[:32]):
        y = int.from_bytes(enc, "little") & _Y_MASK
        if y >= _P or y in _SMALL_ORDER_Y:
            return False
    return True


class PyNaClEd25519:
    """Verification through PyNaCl (libsodium): the fallback.

    The rule set's encoding, small-order and S < L checks run first, so the answer is
    the native one on every input except crafted signatures whose A or R carries a
    small-order component (mixed order): libsodium's equation is cofactorless and
    rejects some of those that the cofactored native equation accepts.
    """

    name = "pynacl"

    def verify(self, pubkey: Buffer, msg: Buffer, sig: Buffer) -> bool:
        pubkey, sig = bytes(pubkey), bytes(sig)
        if not _rule_set_allows(pubkey, sig):
            return False
        from nacl.bindings import crypto_sign_open  # here: ~10 ms of imports nobody else needs
        from nacl.exceptions import BadSignatureError

        try:
            crypto_sign_open(sig + bytes(msg), pubkey)
        except BadSignatureError:
            return False
        return True

    def verify_batch(self, items: Sequence[tuple[Buffer, Buffer, Buffer]]) -> list[bool]:
        return [self.verify(pk, msg, sig) for pk, msg, sig in items]


class NativeEd25519:
    """Verification through the C core (native/ed25519.c)."""

    name = "native"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or _default_threads()

    def verify(self, pubkey: Buffer, msg: Buffer, sig: Buffer) -> bool:
        pk = _ffi.from_buffer("uint8_t[]", pubkey)
        sg = _ffi.from_buffer("uint8_t[]", sig)
        if len(pk) != 32 or len(sg) != 64:
            return False
        m = _ffi.from_buffer("uint8_t[]", msg)
        return _lib.p2pd_ed25519_verify(pk, m, len(m), sg) == 1

    def verify_batch(self, items: Sequence[tuple[Buffer, Buffer, Buffer]]) -> list[bool]:
        n = len(items)
        if n == 0:
            return []
        pks, msgs, sigs = (list(col) for col in zip(*items, strict=True))
        pk_data, sig_data = b"".join(pks), b"".join(sigs)
        results = bytearray(n)
        if len(pk_data) != 32 * n or len(sig_data) != 64 * n:
            # Some have wrong lengths: those are False, the rest go through the batch.
            keep = [i for i in range(n) if _nbytes(pks[i]) == 32 and _nbytes(sigs[i]) == 64]
            sub = self.verify_batch([items[i] for i in keep])
            out = [False] * n
            for i, ok in zip(keep, sub, strict=True):
                out[i] = ok
            return out
        msg_data = b"".join(msgs)
        lens = array("Q", map(_nbytes, msgs))
        pk_p = _ffi.from_buffer("uint8_t[]", pk_data)
        sig_p = _ffi.from_buffer("uint8_t[]", sig_data)
        msg_p = _ffi.from_buffer("uint8_t[]", msg_data)
        len_p = _ffi.from_buffer("uint64_t[]", lens)
        res_p = _ffi.from_buffer("uint8_t[]", results)
        # Threads only pay for themselves from a couple of chunks each.
        work = _SPLIT_WORK if n >= _ED_SPLIT_MIN else 0
        _split(n, work, self.threads, lambda a, b: _lib.p2pd_ed25519_verify_batch(
            b - a, pk_p + 32 * a, sig_p + 64 * a, msg_p + _lib.p2pd_sum_u64(len_p, a), len_p + a,
            res_p + a))
        return [r == 1 for r in results]


_ED_SPLIT_MIN = 128

def ed25519_implementations(threads: int | None = None) -> dict[str, PyNaClEd25519 | NativeEd25519]:
    """Every Ed25519 verifier this machine can run, by name ("pynacl", "native")."""
    found: dict[str, PyNaClEd25519 | NativeEd25519] = {"pynacl": PyNaClEd25519()}
    if _lib is not None:
        found["native"] = NativeEd25519(threads)
    return found


_ed25519 = NativeEd25519() if _lib is not None else PyNaClEd25519()
#: Name of the Ed25519 verifier in use: "native" or "pynacl".
ED25519_IMPL = _ed25519.name

#: ``verify(pubkey, msg, sig) -> bool``: one signature under the rule set; wrong lengths are False.
verify = _ed25519.verify
#: ``verify_batch([(pubkey, msg, sig), ...]) -> list[bool]``: each signature's own answer.
verify_batch = _ed25519.verify_batch
