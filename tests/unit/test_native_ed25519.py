"""Ed25519 verification: the C core and the PyNaCl fallback under one rule set.

The rule set (docs/ed25519.md): canonical A and R, neither of small order, S < L,
cofactored equation. Vectors: RFC 8032, Wycheproof, the 12 edge cases of
ed25519-speccheck ("Taming the many EdDSAs"); differential tests against PyNaCl on
100,000 honest signatures and on bit flips; hypothesis: batch == single.
"""

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd import native

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
IMPLS = native.ed25519_implementations()
NATIVE = IMPLS.get("native")
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C core is not built here")

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 1-3: (secret seed, public key, message, signature).
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc"
     "61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996"
     "e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f29"
     "0ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

# ed25519-speccheck cases 0-11 under our rule set (V valid, X invalid), and under
# libsodium's (the fallback): they differ only on 4 and 5, mixed-order A and R that
# pass the cofactored equation and fail the cofactorless one.
SPECCHECK_NATIVE = "XXXVVVXXXXXX"
SPECCHECK_PYNACL = "XXXVXXXXXXXX"


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def _signed(n: int, seed: int = 0, keys: int = 8) -> list[tuple[bytes, bytes, bytes]]:
    rnd = random.Random(seed)
    sks = [nacl.signing.SigningKey(rnd.randbytes(32)) for _ in range(keys)]
    out = []
    for i in range(n):
        sk = sks[i % keys]
        msg = rnd.randbytes(rnd.randrange(0, 200))
        out.append((bytes(sk.verify_key), msg, sk.sign(msg).signature))
    return out


def _flip(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    if not b:
        return b"\x00"
    b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    return bytes(b)


def test_native_is_in_use_when_built():
    if NATIVE is not None:
        assert native.ED25519_IMPL == "native"


@pytest.mark.parametrize("seed,pk,msg,sig", RFC8032, ids=["test1", "test2", "test3"])
def test_rfc8032_vectors(impl, seed, pk, msg, sig):
    pk, msg, sig = bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
    sk = nacl.signing.SigningKey(bytes.fromhex(seed))
    assert bytes(sk.verify_key) == pk and sk.sign(msg).signature == sig  # the vector is right
    assert impl.verify(pk, msg, sig)
    assert impl.verify_batch([(pk, msg, sig)] * 3) == [True] * 3
    assert not impl.verify(pk, msg + b"x", sig)


def _wycheproof():
    doc = json.loads((VECTORS / "wycheproof_ed25519_test.json").read_text())
    for group in doc["testGroups"]:
        pk = bytes.fromhex(group["publicKey"]["pk"])
        for t in group["tests"]:
            yield t["tcId"], pk, bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]), t["result"]


def test_wycheproof_vectors(impl):
    cases = list(_wycheproof())
    assert len(cases) > 100
    wrong = [(tc, want) for tc, pk, msg, sig, want in cases
             if impl.verify(pk, msg, sig) != (want == "valid")]
    assert not wrong
    got = impl.verify_batch([(pk, msg, sig) for _, pk, msg, sig, _ in cases])
    assert got == [want == "valid" for *_, want in cases]


def test_speccheck_edge_cases_give_the_rule_sets_answers(impl):
    cases = json.loads((VECTORS / "ed25519_speccheck_cases.json").read_text())
    items = [(bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]),
              bytes.fromhex(c["signature"])) for c in cases]
    want = SPECCHECK_NATIVE if impl.name == "native" else SPECCHECK_PYNACL
    assert "".join("V" if impl.verify(*it) else "X" for it in items) == want
    assert "".join("V" if ok else "X" for ok in impl.verify_batch(items)) == want


def test_wrong_lengths_are_invalid_not_errors(impl):
    pk, msg, sig = _signed(1)[0]
    for bad_pk, bad_sig in [(pk[:31], sig), (pk + b"\0", sig), (pk, sig[:63]), (pk, sig + b"\0"),
                            (b"", b"")]:
        assert impl.verify(bad_pk, msg, bad_sig) is False
    mixed = [(pk, msg, sig), (pk[:31], msg, sig), (pk, msg, sig[:10]), (pk, msg, sig)]
    assert impl.verify_batch(mixed) == [True, False, False, True]


def test_encodings_outside_the_rule_set(impl):
    pk, msg, sig = _signed(1)[0]
    s = int.from_bytes(sig[32:], "little")
    # S + L: the same point equation, but S must be < L.
    assert not impl.verify(pk, msg, sig[:32] + (s + L).to_bytes(32, "little"))
    # A non-canonical y (y >= p) for A and for R.
    noncanon = (P + 1).to_bytes(32, "little")  # y = p + 1, i.e. y = 1 non-canonically
    assert not impl.verify(noncanon, msg, sig)
    assert not impl.verify(pk, msg, noncanon + sig[32:])
    # Small-order A: the identity (y = 1) and the order-2 point (y = p - 1).
    for small in (b"\x01" + bytes(31), (P - 1).to_bytes(32, "little")):
        assert not impl.verify(small, msg, sig)
        assert not impl.verify(pk, msg, small + sig[32:])


def _not_on_curve() -> bytes:
    """An encoding whose y gives no x (x^2 = (y^2 - 1) / (d y^2 + 1) is not a square)."""
    d = (-121665 * pow(121666, P - 2, P)) % P
    rnd = random.Random(7)
    while True:
        y = rnd.randrange(2, P - 1)
        x2 = (y * y - 1) * pow(d * y * y + 1, P - 2, P) % P
        if pow(x2, (P - 1) // 2, P) == P - 1:
            return y.to_bytes(32, "little")


def test_points_not_on_the_curve_are_invalid(impl):
    pk, msg, sig = _signed(1)[0]
    off = _not_on_curve()
    assert not impl.verify(off, msg, sig)
    assert not impl.verify(pk, msg, off + sig[32:])
    assert impl.verify_batch([(off, msg, sig), (pk, msg, sig)]) == [False, True]


def test_empty_batch(impl):
    assert impl.verify_batch([]) == []


@needs_native
def test_differential_against_pynacl_on_100000_honest_signatures():
    rnd = random.Random(11)
    sks = [nacl.signing.SigningKey(rnd.randbytes(32)) for _ in range(64)]
    items = []
    for i in range(100_000):
        sk = sks[i % 64]
        msg = i.to_bytes(4, "little") + rnd.randbytes(i % 61)
        items.append((bytes(sk.verify_key), msg, sk.sign(msg).signature))
    assert NATIVE.verify_batch(items) == [True] * len(items)
    sample = rnd.sample(items, 2000)
    assert all(NATIVE.verify(*it) for it in sample)
    assert all(IMPLS["pynacl"].verify(*it) for it in sample)


@needs_native
def test_differential_against_pynacl_on_bit_flips():
    rnd = random.Random(12)
    base = _signed(300, seed=12)
    items = []
    for pk, msg, sig in base:
        which = rnd.randrange(3)
        items.append((_flip(pk, rnd) if which == 0 else pk,
                      _flip(msg, rnd) if which == 1 else msg,
                      _flip(sig, rnd) if which == 2 else sig))
    ours = [NATIVE.verify(*it) for it in items]
    theirs = [IMPLS["pynacl"].verify(*it) for it in items]
    assert ours == theirs
    assert NATIVE.verify_batch(items) == ours
    assert not any(ours)


POOL = _signed(48, seed=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.integers(0, 4),
                          st.integers(0, 511)), max_size=90))
def test_property_batch_equals_single(picks):
    items = []
    for index, mutation, where in picks:
        pk, msg, sig = POOL[index]
        if mutation == 1:
            sig = bytearray(sig)
            sig[where % 64] ^= 1 << (where % 8)
            sig = bytes(sig)
        elif mutation == 2:
            msg = msg + bytes([where % 256])
        elif mutation == 3:
            pk = POOL[(index + 1) % len(POOL)][0]
        items.append((pk, msg, sig))
    for im in IMPLS.values():
        assert im.verify_batch(items) == [im.verify(*it) for it in items]


@needs_native
def test_large_batches_split_across_threads_agree():
    items = _signed(700, seed=5)
    rnd = random.Random(5)
    bad = set(rnd.sample(range(len(items)), 40))
    items = [(pk, msg, _flip(sig, rnd)) if i in bad else (pk, msg, sig)
             for i, (pk, msg, sig) in enumerate(items)]
    want = [i not in bad for i in range(len(items))]
    for threads in (1, 2, 4):
        assert native.ed25519_implementations(threads)["native"].verify_batch(items) == want


CC = shutil.which("cc") or shutil.which("gcc")


def _sanitizer_works(tmp_path: Path) -> bool:
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    done = subprocess.run([CC, "-fsanitize=address,undefined", str(probe), "-o",
                           str(tmp_path / "probe")], capture_output=True)
    return done.returncode == 0


@pytest.mark.skipif(CC is None, reason="no C compiler on this machine")
def test_c_core_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    """The C sources built with ASan + UBSan run every vector kind, single and batched."""
    if not _sanitizer_works(tmp_path):
        pytest.skip("this compiler has no AddressSanitizer/UBSan runtime")
    src = Path(__file__).resolve().parents[2] / "native"
    exe = tmp_path / "driver"
    subprocess.run(
        [CC, "-O1", "-g", "-std=c11", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", f"-I{src}",
         str(Path(__file__).resolve().parents[1] / "native" / "ed25519_driver.c"),
         str(src / "ed25519.c"), str(src / "sha512.c"), str(src / "sha256.c"), "-o", str(exe)],
        check=True, capture_output=True, timeout=180,
    )
    items = [(pk, msg, sig) for _, pk, msg, sig, _ in _wycheproof() if len(pk) == 32
             and len(sig) == 64]
    cases = json.loads((VECTORS / "ed25519_speccheck_cases.json").read_text())
    items += [(bytes.fromhex(c["pub_key"]), bytes.fromhex(c["message"]),
               bytes.fromhex(c["signature"])) for c in cases]
    rnd = random.Random(9)
    honest = _signed(150, seed=9)
    items += honest + [(pk, msg, _flip(sig, rnd)) for pk, msg, sig in honest[:50]]
    items += [(_not_on_curve(), b"m", honest[0][2]), (honest[0][0], b"m", bytes(64))]
    stdin = "".join(f"{pk.hex()} {sig.hex()} {msg.hex() or '-'}\n" for pk, msg, sig in items)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1", UBSAN_OPTIONS="halt_on_error=1")
    run = subprocess.run([str(exe)], input=stdin.replace(" -\n", " \n"), capture_output=True,
                         text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "runtime error" not in run.stderr and "AddressSanitizer" not in run.stderr
    lines = run.stdout.split("\n")
    singles = [int(x) for x in lines[: len(items)]]
    batch = [int(x) for x in lines[len(items)].split()[1:]]
    assert singles == batch
    assert singles == [int(NATIVE.verify(*it)) if NATIVE else singles[i]
                       for i, it in enumerate(items)]
