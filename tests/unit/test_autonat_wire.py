"""AutoNAT v1/v2 messages: round trips, and what is refused."""

import pytest

from p2pd.net import autonat_wire as w


def test_v1_dial_and_response_round_trip():
    dial = w.V1Message(w.DIAL, b"\x00\x24" + b"k" * 36, [b"\x04\xc0\x00\x02\x01\x06\x0f\xa1"])
    back = w.decode_v1(dial.encode())
    assert back.type == w.DIAL and back.peer_id == dial.peer_id and back.addrs == dial.addrs
    resp = w.V1Message(w.DIAL_RESPONSE, status=w.E_DIAL_ERROR, status_text="no", addr=b"\x04abcd")
    back = w.decode_v1(resp.encode())
    assert (back.status, back.status_text, back.addr) == (w.E_DIAL_ERROR, "no", b"\x04abcd")
    ok = w.decode_v1(w.V1Message(w.DIAL_RESPONSE, status=w.OK).encode())
    assert ok.status == w.OK


@pytest.mark.parametrize("msg", [
    w.DialRequest([b"\x04\x01\x02\x03\x04\x06\x00\x01", b"\x29" + bytes(16)], 2**64 - 1),
    w.DialResponse(w.R_OK, 1, w.D_OK),
    w.DialResponse(w.R_REQUEST_REJECTED),
    w.DialDataRequest(0, 50_000),
    w.DialDataResponse(bytes(4096)),
])
def test_v2_messages_round_trip(msg):
    assert w.decode_v2(w.encode_v2(msg)) == msg


def test_dial_back_round_trip():
    assert w.decode_dial_back(w.encode_dial_back(12345678901234567890)) == 12345678901234567890
    assert w.decode_dial_back_response(w.encode_dial_back_response()) == 0


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (w.encode_v2(w.DialRequest([], 1)) + w.encode_v2(w.DialResponse(w.R_OK)), "more than one"),
    (b"\x0a\x02\x0a\x00", "address of 0 bytes"),
    (b"\x0a\x00", "nonce"),
    (w.encode_v2(w.DialDataResponse(bytes(4097))), "limit"),
    (b"\x0a\x05\x0a\x09", "malformed"),
    (bytes(9000), "limit"),
])
def test_v2_refusals(data, why):
    with pytest.raises(w.AutonatWireError, match=why):
        w.decode_v2(data)


def test_v1_refusals():
    with pytest.raises(w.AutonatWireError, match="type"):
        w.decode_v1(b"\x08\x07")
    with pytest.raises(w.AutonatWireError, match="status"):
        w.decode_v1(w.V1Message(w.DIAL_RESPONSE, status=42).encode())
    many = w.V1Message(w.DIAL, b"p", [b"\x04abcd\x06\x00\x01"] * (w.MAX_ADDRS + 1))
    with pytest.raises(w.AutonatWireError, match="more than"):
        w.decode_v1(many.encode())
