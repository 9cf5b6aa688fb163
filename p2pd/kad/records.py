"""DHT records: namespaced validators and selectors for ``/pk`` and ``/ipns``.

A record key is ``/<namespace>/<rest>``; only namespaces with a validator are accepted
(anything else is refused with :class:`RecordInvalid`). ``validate`` raises with the
reason; ``select`` picks the best of several valid values for one key.

- ``/pk/<peer id>``: the value is the peer's public key (libp2p ``PublicKey`` protobuf)
  and must hash to that peer id. All valid values are equal; the first is selected.
- ``/ipns/<peer id>``: an IPNS record (ipfs/specs ipns/IPNS.md), at most 10 KiB, with a
  ``signatureV2`` by the name's Ed25519 key over ``"ipns-signature:" || data``, ``data``
  a DAG-CBOR map whose fields the protobuf copies (when present) must match, and an EOL
  validity in the future. Highest sequence wins, then the latest EOL. Signatures are
  checked by :func:`p2pd.native.verify` (one rule set, docs/ed25519.md).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from .. import native
from ..blocks import cbor
from ..errors import P2PDError
from ..peerkeys import PeerKeyError, peer_id_from_public_key, public_key_in_peer_id
from ..peerkeys import parse_public_key as _parse_public_key
from ..proto import ipns_record_pb2 as ipns_pb2

MAX_IPNS_RECORD = 10 * 1024
KEY_TYPE_ED25519 = 1



class RecordInvalid(P2PDError, ValueError):
    """A record that must not be stored or served; the message says why."""


# -- keys and peer ids --------------------------------------------------------------------

def parse_public_key(pubkey_proto: bytes) -> tuple[int, bytes]:
    """``(key type, key bytes)``; a malformed key is :class:`RecordInvalid` here."""
    try:
        return _parse_public_key(pubkey_proto)
    except PeerKeyError as exc:
        raise RecordInvalid(str(exc)) from None


__all__ = ["peer_id_from_public_key", "public_key_in_peer_id", "parse_public_key"]


def split_key(key: bytes) -> tuple[str, bytes]:
    if not key.startswith(b"/"):
        raise RecordInvalid("record key must start with '/'")
    namespace, sep, rest = key[1:].partition(b"/")
    if not sep or not rest:
        raise RecordInvalid("record key must be /<namespace>/<key>")
    try:
        return namespace.decode("ascii"), rest
    except UnicodeDecodeError:
        raise RecordInvalid("record namespace is not ASCII") from None


# -- /pk ------------------------------------------------------------------------------------

class PublicKeyValidator:
    def validate(self, rest: bytes, value: bytes, now: float) -> None:
        parse_public_key(value)
        if peer_id_from_public_key(value) != rest:
            raise RecordInvalid("public key does not match the peer id in the key")

    def select(self, rest: bytes, values: list[bytes]) -> int:
        return 0


# -- /ipns ----------------------------------------------------------------------------------

_RFC3339 = re.compile(
    rb"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_eol(raw: bytes) -> float:
    m = _RFC3339.match(raw)
    if not m:
        raise RecordInvalid("IPNS validity is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(x) for x in m.groups()[:6])
    frac = m.group(7) or b"0"
    try:
        tz = dt.UTC
        if m.group(8) != b"Z":
            sign = 1 if m.group(8)[:1] == b"+" else -1
            hh, mm = int(m.group(8)[1:3]), int(m.group(8)[4:6])
            tz = dt.timezone(sign * dt.timedelta(hours=hh, minutes=mm))
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise RecordInvalid(f"IPNS validity: {exc}") from None
    return when.timestamp() + int(frac) / 10 ** len(frac)


@dataclass(slots=True)
class IpnsRecord:
    value: bytes
    validity: bytes
    eol: float
    sequence: int
    ttl: int


def decode_ipns(raw: bytes) -> tuple[ipns_pb2.IpnsEntry, IpnsRecord]:
    if len(raw) > MAX_IPNS_RECORD:
        raise RecordInvalid(f"IPNS record of {len(raw)} bytes exceeds {MAX_IPNS_RECORD}")
    entry = ipns_pb2.IpnsEntry()
    try:
        entry.ParseFromString(raw)
    except DecodeError as exc:
        raise RecordInvalid(f"not an IPNS record: {exc}") from None
    if not entry.HasField("signatureV2") or not entry.HasField("data"):
        raise RecordInvalid("IPNS record lacks signatureV2 or data")
    try:
        data = cbor.decode(entry.data)
    except cbor.CBORError as exc:
        raise RecordInvalid(f"IPNS data is not DAG-CBOR: {exc}") from None
    if not isinstance(data, dict):
        raise RecordInvalid("IPNS data is not a map")
    fields = {"Value": bytes, "Validity": bytes, "ValidityType": int, "Sequence": int, "TTL": int}
    for name, kind in fields.items():
        if not isinstance(data.get(name), kind) or isinstance(data.get(name), bool):
            raise RecordInvalid(f"IPNS data field {name} missing or not {kind.__name__}")
    if data["ValidityType"] != 0:
        raise RecordInvalid("IPNS validity type is not EOL")
    if data["Sequence"] < 0 or data["TTL"] < 0:
        raise RecordInvalid("IPNS sequence and TTL must not be negative")
    copies = (("value", "Value"), ("validity", "Validity"), ("sequence", "Sequence"),
              ("ttl", "TTL"))
    for pb_name, cbor_name in copies:
        if entry.HasField(pb_name) and getattr(entry, pb_name) != data[cbor_name]:
            raise RecordInvalid(f"IPNS protobuf field {pb_name} does not match the signed data")
    record = IpnsRecord(data["Value"], data["Validity"], parse_eol(data["Validity"]),
                        data["Sequence"], data["TTL"])
    return entry, record


class IpnsValidator:
    def validate(self, rest: bytes, value: bytes, now: float) -> None:
        entry, record = decode_ipns(value)
        pubkey = entry.pubKey if entry.HasField("pubKey") else public_key_in_peer_id(rest)
        if pubkey is None:
            raise RecordInvalid("IPNS record has no public key and the name inlines none")
        if peer_id_from_public_key(pubkey) != rest:
            raise RecordInvalid("IPNS public key does not match the name")
        key_type, key = parse_public_key(pubkey)
        if key_type != KEY_TYPE_ED25519:
            raise RecordInvalid("only Ed25519 IPNS keys are supported")
        if not native.verify(key, b"ipns-signature:" + entry.data, entry.signatureV2):
            raise RecordInvalid("IPNS signature does not verify")
        if record.eol <= now:
            raise RecordInvalid("IPNS record has expired")

    def select(self, rest: bytes, values: list[bytes]) -> int:
        scored = []
        for i, v in enumerate(values):
            _entry, record = decode_ipns(v)
            scored.append((record.sequence, record.eol, -i))
        return -max(scored)[2]


VALIDATORS: dict[str, PublicKeyValidator | IpnsValidator] = {
    "pk": PublicKeyValidator(),
    "ipns": IpnsValidator(),
}


def validate(key: bytes, value: bytes, now: float) -> None:
    """Raise :class:`RecordInvalid` unless ``value`` is a valid record for ``key``."""
    namespace, rest = split_key(key)
    validator = VALIDATORS.get(namespace)
    if validator is None:
        raise RecordInvalid(f"unknown record namespace {namespace!r}")
    validator.validate(rest, value, now)


def select(key: bytes, values: list[bytes]) -> int:
    """Index of the best of several valid ``values`` for ``key``."""
    if not values:
        raise ValueError("nothing to select from")
    namespace, rest = split_key(key)
    validator = VALIDATORS.get(namespace)
    if validator is None:
        raise RecordInvalid(f"unknown record namespace {namespace!r}")
    return validator.select(rest, values)
