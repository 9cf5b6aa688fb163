"""Whatever a (spoofed or broken) router sends, the NAT-PMP parsers return or raise
PortMapError, nothing else."""

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.net import portmap as pm


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40))
def test_parsers_only_raise_their_error(data):
    for parse in (pm.parse_address, pm.parse_map):
        try:
            parse(data)
        except pm.PortMapError:
            pass
