import pytest

from p2pd.cli.daemon import daemon_flags
from p2pd.errors import ConfigError


def test_go_flag_forms_all_parse():
    values, rest = daemon_flags().parse(
        ["-listen", "/unix/tmp/x.sock", "--hostAddrs=/ip4/127.0.0.1/tcp/0", "-dht", "-connLo=5",
         "--connHi", "9", "-quiet=false"]
    )
    assert values == {
        "listen": "/unix/tmp/x.sock",
        "hostAddrs": "/ip4/127.0.0.1/tcp/0",
        "dht": True,
        "connLo": 5,
        "connHi": 9,
        "quiet": False,
    }
    assert rest == []


def test_boolean_flag_does_not_swallow_next_argument():
    values, rest = daemon_flags().parse(["-dht", "true"])
    assert values == {"dht": True}
    assert rest == ["true"]


def test_double_dash_ends_flags():
    values, rest = daemon_flags().parse(["-quiet", "--", "-dht"])
    assert values == {"quiet": True} and rest == ["-dht"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-nosuch"], "^flag provided but not defined: -nosuch$"),
        (["-connLo=many"], '^invalid value "many" for flag -connLo: parse error$'),
        (["-dht=maybe"], '^invalid boolean value "maybe" for -dht: parse error$'),
        (["-listen"], "^flag needs an argument: -listen$"),
    ],
)
def test_bad_flags_give_clear_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        daemon_flags().parse(argv)


def test_defaults_follow_the_go_daemon():
    d = daemon_flags().defaults()
    assert d["connLo"] == 256 and d["connHi"] == 512 and d["connGrace"] == 120.0
    assert d["pubsubRouter"] == "gossipsub"
