"""TEMPORARY stand-in: replaced by the native-core helper. API contract only."""

import hashlib


def sha256(data) -> bytes:
    return hashlib.sha256(data).digest()
