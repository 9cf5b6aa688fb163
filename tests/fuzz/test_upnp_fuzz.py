"""Whatever a device on the LAN sends, the UPnP parsers return a value or raise UpnpError."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import upnp

PIECES = [b"HTTP/1.1 200 OK\r\n", b"\r\n", b"\r\n\r\n", b"LOCATION: http://198.18.0.1:1/d\r\n",
          b"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n",
          b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5\r\n", b"5\r\n", b"0\r\n",
          b"<root>", b"</root>", b"<service>", b"<serviceType>", b"<controlURL>",
          b"urn:schemas-upnp-org:service:WANIPConnection:1", b"<errorCode>718</errorCode>",
          b"<!DOCTYPE x>", b"&a;", b":", b"\xff"]
messy = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=20)), max_size=30).map(
    b"".join)


@settings(max_examples=1500, deadline=None)
@given(messy)
def test_parsers_only_raise_their_error(data):
    for parse in (upnp.parse_search_response, upnp.parse_http_response,
                  lambda d: upnp.parse_description(d, "http://198.18.0.1:1/d"),
                  lambda d: upnp.parse_soap_response(upnp.Response(500, {}, d), "AddPortMapping"),
                  lambda d: upnp.parse_soap_response(upnp.Response(200, {}, d), "AddPortMapping")):
        try:
            parse(data)
        except upnp.UpnpError:
            pass
