"""py-libp2p's Ed25519 checks (Noise payloads, envelopes, records) go through p2pd.native.

Run in a subprocess: py-libp2p and p2pclient cannot share a process (docs/decisions.md).
"""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
import nacl.signing
from p2pd import native
from p2pd.net.host import verify_ed25519_through_native
from libp2p.crypto.ed25519 import Ed25519PublicKey

verify_ed25519_through_native()
calls = []
real = native.verify
native.verify = lambda *a: calls.append(a) or real(*a)
sk = nacl.signing.SigningKey(bytes(range(32)))
pk = Ed25519PublicKey.from_bytes(bytes(sk.verify_key))
sig = sk.sign(b"hello").signature
case4 = json.loads(sys.argv[1])  # mixed-order A and R: cofactored-valid, libsodium rejects
odd = Ed25519PublicKey.from_bytes(bytes.fromhex(case4["pub_key"]))
print(json.dumps([
    pk.verify(b"hello", sig),
    pk.verify(b"hellO", sig),
    odd.verify(bytes.fromhex(case4["message"]), bytes.fromhex(case4["signature"])),
    len(calls),
]))
"""


def test_py_libp2p_verifies_ed25519_with_our_rule_set():
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "ed25519_speccheck_cases.json"
    case4 = json.loads(vectors.read_text())[4]
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(case4)], capture_output=True,
                         text=True, timeout=120, check=True)
    valid, tampered, mixed_order, calls = json.loads(out.stdout.strip().splitlines()[-1])
    assert valid is True and tampered is False and calls == 3
    from p2pd import native

    # The cofactored rule set accepts case 4 natively; the PyNaCl fallback does not.
    assert mixed_order is (native.ED25519_IMPL == "native")
