"""DHT record validation and selection (/pk, /ipns) and the strict CBOR codec under it."""

import time

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.blocks import cbor
from p2pd.kad import records
from p2pd.kad.records import RecordInvalid
from p2pd.proto import ipns_record_pb2 as ipns_pb2

NOW = 1_800_000_000.0  # 2027-01-15
FUTURE = b"2030-01-01T00:00:00.000000000Z"
PAST = b"2020-01-01T00:00:00Z"


def keypair(seed: int):
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    proto = b"\x08\x01\x12\x20" + bytes(sk.verify_key)
    return sk, proto, records.peer_id_from_public_key(proto)


def ipns(sk, data_value=b"/ipfs/bafy", seq=1, validity=FUTURE, ttl=3600, pubkey=None, **v1):
    data = cbor.encode({"Value": data_value, "Validity": validity, "ValidityType": 0,
                        "Sequence": seq, "TTL": ttl})
    entry = ipns_pb2.IpnsEntry(data=data,
                               signatureV2=sk.sign(b"ipns-signature:" + data).signature)
    if pubkey is not None:
        entry.pubKey = pubkey
    for name, v in v1.items():
        setattr(entry, name, v)
    return entry.SerializeToString()


def test_pk_records():
    _sk, proto, pid = keypair(1)
    records.validate(b"/pk/" + pid, proto, NOW)
    _sk2, other, _ = keypair(2)
    with pytest.raises(RecordInvalid, match="does not match"):
        records.validate(b"/pk/" + pid, other, NOW)
    with pytest.raises(RecordInvalid, match="public key"):
        records.validate(b"/pk/" + pid, b"\xff\xff", NOW)


def test_valid_ipns_record_and_the_ways_it_goes_wrong():
    sk, proto, pid = keypair(3)
    key = b"/ipns/" + pid
    records.validate(key, ipns(sk), NOW)
    records.validate(key, ipns(sk, pubkey=proto, data_value=b"/ipfs/x", value=b"/ipfs/x",
                               sequence=1), NOW)
    with pytest.raises(RecordInvalid, match="expired"):
        records.validate(key, ipns(sk, validity=PAST), NOW)
    other_sk, _, other_pid = keypair(4)
    with pytest.raises(RecordInvalid, match="signature"):
        records.validate(key, ipns(other_sk), NOW)  # signed by someone else
    with pytest.raises(RecordInvalid, match="does not match the name"):
        records.validate(b"/ipns/" + other_pid, ipns(sk, pubkey=proto), NOW)
    with pytest.raises(RecordInvalid, match="value does not match"):
        records.validate(key, ipns(sk, data_value=b"/ipfs/a", value=b"/ipfs/b"), NOW)
    tampered = ipns_pb2.IpnsEntry.FromString(ipns(sk))
    tampered.data = tampered.data.replace(b"bafy", b"bafz")
    with pytest.raises(RecordInvalid, match="signature"):
        records.validate(key, tampered.SerializeToString(), NOW)
    with pytest.raises(RecordInvalid, match="exceeds"):
        records.validate(key, ipns(sk, data_value=b"v" * 11000), NOW)
    with pytest.raises(RecordInvalid, match="lacks"):
        records.validate(key, ipns_pb2.IpnsEntry(value=b"x").SerializeToString(), NOW)


def test_ipns_selection_prefers_sequence_then_validity():
    sk, _proto, pid = keypair(5)
    key = b"/ipns/" + pid
    a = ipns(sk, seq=1, validity=b"2031-01-01T00:00:00Z")
    b = ipns(sk, seq=2, validity=b"2029-01-01T00:00:00Z")
    c = ipns(sk, seq=2, validity=b"2030-06-01T00:00:00Z")
    assert records.select(key, [a, b, c]) == 2
    assert records.select(key, [a, b]) == 1


def test_unknown_namespaces_and_malformed_keys_are_refused():
    for key in (b"/foo/bar", b"noslash", b"/pk", b"/pk/", b"/\xff/x"):
        with pytest.raises(RecordInvalid):
            records.validate(key, b"v", NOW)


def test_rfc3339_parsing():
    assert records.parse_eol(b"1970-01-01T00:00:10Z") == 10
    assert records.parse_eol(b"1970-01-01T01:00:10+01:00") == 10
    assert abs(records.parse_eol(b"1970-01-01T00:00:10.5Z") - 10.5) < 1e-9
    for bad in (b"2020-13-01T00:00:00Z", b"yesterday", b"2020-01-01 00:00:00Z"):
        with pytest.raises(RecordInvalid):
            records.parse_eol(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"/ipns/", b"/pk/"]))
def test_record_validation_fuzz_raises_only_record_invalid(raw, ns):
    _sk, _proto, pid = keypair(6)
    try:
        records.validate(ns + pid, raw, time.time())
    except RecordInvalid:
        pass


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=30)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(cbor_values)
def test_cbor_round_trip(value):
    assert cbor.decode(cbor.encode(value)) == value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_cbor_garbage_raises_only_cbor_errors(raw):
    try:
        cbor.decode(raw)
    except cbor.CBORError:
        pass


def test_cbor_strictness():
    for bad, words in ((b"\x18\x05", "non-minimal"), (b"\x5f", "indefinite"),
                       (b"\xa2\x61a\x01\x61a\x02", "duplicate"), (b"\xc1\x00", "tags"),
                       (b"\xfb" + bytes(8), "simple"), (b"\x01\x02", "after"),
                       (b"\x9f", "indefinite"), (b"\x81" * 40 + b"\x00", "deeper")):
        with pytest.raises(cbor.CBORError, match=words):
            cbor.decode(bad)
