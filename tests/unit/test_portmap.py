"""NAT-PMP codec and the default-gateway lookup (p2pd/net/portmap.py)."""

import struct

import pytest

from p2pd.net import portmap as pm


def test_requests_are_rfc_6886():
    assert pm.address_request() == b"\x00\x00"
    assert pm.map_request(4001, 4001, 7200) == struct.pack(">BBHHHI", 0, 2, 0, 4001, 4001, 7200)
    assert pm.map_request(4001, 0, 0, tcp=False)[1] == 1


def test_answers_parse_and_errors_name_the_result():
    assert str(pm.parse_address(b"\x00\x80\x00\x00" + b"\x00" * 4 + bytes([198, 51, 100, 9]))) \
        == "198.51.100.9"
    reply = struct.pack(">BBHIHHI", 0, 130, 0, 5, 4001, 31000, 3600)
    assert pm.parse_map(reply) == pm.Mapping(4001, 31000, 3600)
    with pytest.raises(pm.PortMapError, match="not authorized"):
        pm.parse_map(struct.pack(">BBHIHHI", 0, 130, 2, 5, 4001, 0, 0))
    with pytest.raises(pm.PortMapError, match="opcode"):
        pm.parse_map(struct.pack(">BBHIHHI", 0, 129, 0, 5, 4001, 1, 1))
    with pytest.raises(pm.PortMapError, match="bytes"):
        pm.parse_address(b"\x00\x80")


def test_default_gateway_from_the_routing_table(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "lan0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "lan0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\n")
    assert pm.default_gateway(str(table)) == "198.18.0.1"
    assert pm.default_gateway(str(tmp_path / "missing")) is None
