"""UPnP IGD codec (p2pd/net/upnp.py): SSDP answers, device descriptions, SOAP calls and
their faults, as a gateway (miniupnpd's layout) sends them."""

import pytest

from p2pd.net import upnp

SSDP_OK = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n"
           b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
           b"USN: uuid:3f2b::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
           b"EXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.3\r\n"
           b"LOCATION: http://198.18.0.1:40123/rootDesc.xml\r\n\r\n")

DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>"""


def http(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Type: text/xml\r\n%bContent-Length: %d\r\n\r\n"
            % (status, extra, len(body)) + body)


def test_an_ssdp_answer_gives_the_description_url():
    assert upnp.parse_search_response(SSDP_OK) == "http://198.18.0.1:40123/rootDesc.xml"
    assert b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1" in upnp.search_request()


@pytest.mark.parametrize("data, says", [
    (b"NOTIFY * HTTP/1.1\r\n\r\n", "not an SSDP answer"),
    (SSDP_OK.replace(b"InternetGatewayDevice", b"MediaServer"), "not a gateway"),
    (SSDP_OK.replace(b"http://198.18.0.1:40123", b"ftp://x"), "bad LOCATION"),
    (SSDP_OK.replace(b":40123", b":99999"), "bad LOCATION"),
    (SSDP_OK + b"x" * 3000, "bytes"),
])
def test_other_ssdp_packets_are_refused(data, says):
    with pytest.raises(upnp.UpnpError, match=says):
        upnp.parse_search_response(data)


def test_the_wan_ip_connection_service_is_found_under_nested_devices():
    svc = upnp.parse_description(DESCRIPTION, "http://198.18.0.1:40123/rootDesc.xml")
    assert svc == upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1",
                               "http://198.18.0.1:40123/ctl/IPConn")


def test_descriptions_without_a_mapping_service_or_with_entities_are_refused():
    with pytest.raises(upnp.UpnpError, match="no WANIPConnection"):
        upnp.parse_description(DESCRIPTION.replace(b"WANIPConnection", b"WANCommonIFC"), "http://a/")
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>'
    with pytest.raises(upnp.UpnpError, match="DOCTYPE"):
        upnp.parse_description(bomb, "http://a/")
    with pytest.raises(upnp.UpnpError, match="malformed"):
        upnp.parse_description(b"<root><device>", "http://a/")


def test_add_port_mapping_is_a_soap_post_with_every_argument():
    svc = upnp.Service("urn:schemas-upnp-org:service:WANIPConnection:1", "http://198.18.0.1:5/c")
    host, port, req = upnp.add_port_mapping(svc, "198.18.0.10", 4001, 4001, 3600)
    assert (host, port) == ("198.18.0.1", 5)
    head, body = req.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /c HTTP/1.1\r\n")
    assert b'SOAPAction: "urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"' in head
    assert b"Content-Length: %d" % len(body) in head
    for arg in (b"<NewExternalPort>4001</NewExternalPort>", b"<NewProtocol>TCP</NewProtocol>",
                b"<NewInternalClient>198.18.0.10</NewInternalClient>",
                b"<NewLeaseDuration>3600</NewLeaseDuration>", b"<NewEnabled>1</NewEnabled>"):
        assert arg in body


def test_answers_and_faults_are_read():
    ok = http(200, b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/'
                   b'envelope/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:x">'
                   b"<NewExternalIPAddress>198.51.100.4</NewExternalIPAddress>"
                   b"</u:GetExternalIPAddressResponse></s:Body></s:Envelope>")
    args = upnp.parse_soap_response(upnp.parse_http_response(ok), "GetExternalIPAddress")
    assert upnp.parse_external_ip(args) == "198.51.100.4"
    fault = http(500, b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                      b"<s:Fault><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">"
                      b"<errorCode>718</errorCode><errorDescription>ConflictInMappingEntry"
                      b"</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>")
    with pytest.raises(upnp.UpnpError, match="ConflictInMappingEntry") as err:
        upnp.parse_soap_response(upnp.parse_http_response(fault), "AddPortMapping")
    assert err.value.code == upnp.CONFLICT
    with pytest.raises(upnp.UpnpError, match="not an external IPv4"):
        upnp.parse_external_ip({"NewExternalIPAddress": "gateway"})


def test_http_answers_chunked_or_cut():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n")
    assert upnp.parse_http_response(chunked).body == b"abcdef"
    with pytest.raises(upnp.UpnpError, match="announced"):
        upnp.parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(upnp.UpnpError, match="truncated"):
        upnp.parse_http_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab")
    with pytest.raises(upnp.UpnpError, match="not an http URL"):
        upnp.http_request("GET", "http://a/\r\nX-Injected: 1")
