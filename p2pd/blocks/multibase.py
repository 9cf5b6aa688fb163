"""Multibase: self-describing base encodings (one prefix character, then the text).

Supported: ``z`` base58btc, ``b``/``B`` base32 (RFC 4648, no padding), ``f``/``F``
base16, ``k`` base36, ``m`` base64, ``u`` base64url. Decoding is strict: a string
that does not round-trip to itself is refused, so each byte string has exactly
one spelling per base.
"""

import base64
import binascii
import enum

from ..errors import InvalidCID

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}
_B36_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_INDEX = {c: i for i, c in enumerate(_B36_ALPHABET)}


class Multibase(enum.Enum):
    BASE58BTC = "z"
    BASE32 = "b"
    BASE32UPPER = "B"
    BASE16 = "f"
    BASE16UPPER = "F"
    BASE36 = "k"
    BASE64 = "m"
    BASE64URL = "u"


def _encode_leading_zero_base(data: bytes, alphabet: str) -> str:
    """Big-integer base conversion where each leading zero byte becomes alphabet[0]."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    base = len(alphabet)
    out = []
    while num:
        num, rem = divmod(num, base)
        out.append(alphabet[rem])
    return alphabet[0] * zeros + "".join(reversed(out))


def _decode_leading_zero_base(text: str, index: dict[str, int], name: str) -> bytes:
    zero = next(c for c, i in index.items() if i == 0)
    zeros = len(text) - len(text.lstrip(zero))
    num = 0
    base = len(index)
    for ch in text:
        digit = index.get(ch)
        if digit is None:
            raise InvalidCID(f"invalid {name} character {ch!r}")
        num = num * base + digit
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def b58encode(data: bytes) -> str:
    return _encode_leading_zero_base(bytes(data), _B58_ALPHABET)


def b58decode(text: str) -> bytes:
    return _decode_leading_zero_base(text, _B58_INDEX, "base58btc")


def b32encode(data: bytes) -> str:
    return base64.b32encode(bytes(data)).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    if text != text.lower():
        raise InvalidCID("base32 text mixes upper and lower case")
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        data = base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCID(f"invalid base32 text: {exc}") from None
    if b32encode(data) != text:
        raise InvalidCID("base32 text is not canonical (bad length or trailing bits)")
    return data


def encode(data: bytes, base: Multibase) -> str:
    """Encode bytes as a multibase string (prefix included)."""
    data = bytes(data)
    if base is Multibase.BASE58BTC:
        body = b58encode(data)
    elif base is Multibase.BASE32:
        body = b32encode(data)
    elif base is Multibase.BASE32UPPER:
        body = b32encode(data).upper()
    elif base is Multibase.BASE16:
        body = data.hex()
    elif base is Multibase.BASE16UPPER:
        body = data.hex().upper()
    elif base is Multibase.BASE36:
        body = _encode_leading_zero_base(data, _B36_ALPHABET)
    elif base is Multibase.BASE64:
        body = base64.b64encode(data).decode("ascii").rstrip("=")
    elif base is Multibase.BASE64URL:
        body = base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    else:  # pragma: no cover - enum is closed
        raise InvalidCID(f"unsupported multibase {base}")
    return base.value + body


def decode(text: str) -> tuple[Multibase, bytes]:
    """Decode a multibase string; return the base and the bytes."""
    if not isinstance(text, str):
        raise InvalidCID(f"multibase input must be text, got {type(text).__name__}")
    if not text:
        raise InvalidCID("empty multibase string")
    try:
        base = Multibase(text[0])
    except ValueError:
        raise InvalidCID(f"unknown multibase prefix {text[0]!r}") from None
    body = text[1:]
    if base is Multibase.BASE58BTC:
        data = b58decode(body)
    elif base is Multibase.BASE32:
        data = b32decode(body)
    elif base is Multibase.BASE32UPPER:
        if body != body.upper():
            raise InvalidCID("base32upper text contains lower-case letters")
        data = b32decode(body.lower())
    elif base in (Multibase.BASE16, Multibase.BASE16UPPER):
        want_upper = base is Multibase.BASE16UPPER
        if body != (body.upper() if want_upper else body.lower()):
            raise InvalidCID("base16 text has the wrong letter case for its prefix")
        try:
            data = bytes.fromhex(body)
        except ValueError:
            raise InvalidCID("invalid base16 text") from None
        if len(body) % 2 or any(c.isspace() for c in body):
            raise InvalidCID("invalid base16 text")
    elif base is Multibase.BASE36:
        if body != body.lower():
            raise InvalidCID("base36 text must be lower case")
        data = _decode_leading_zero_base(body, _B36_INDEX, "base36")
    else:
        alt = base is Multibase.BASE64URL
        try:
            padded = body + "=" * (-len(body) % 4)
            data = (
                base64.urlsafe_b64decode(padded.encode("ascii"))
                if alt
                else base64.b64decode(padded.encode("ascii"), validate=True)
            )
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidCID(f"invalid {base.name.lower()} text") from None
    if encode(data, base)[1:] != body:
        raise InvalidCID(f"{base.name.lower()} text is not canonical")
    return base, data
