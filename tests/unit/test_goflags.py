import pytest

from p2pd.cli.daemon import daemon_flags
from p2pd.errors import ConfigError
from p2pd.goflags import FlagError


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


# `p2pd -h` of the go daemon (hivemind's fork v0.5.0.hivemind1, in the hivemind 1.1.12 wheel):
# every flag with its go type and default, copied from that output. The upstream v0.9 daemon
# adds -plaintext (bool, true) and -echo (bool, true).
GO_DAEMON_FLAGS = {
    "announceAddrs": ("string", None), "autoRelay": ("bool", False), "autonat": ("bool", False),
    "b": ("bool", False), "bootstrapPeers": ("string", None), "connGrace": ("duration", 120.0),
    "connHi": ("int", 512), "connLo": ("int", 256), "connManager": ("bool", False),
    "dht": ("bool", False), "dhtClient": ("bool", False), "dhtServer": ("bool", False),
    "f": ("string", None), "forceReachabilityPrivate": ("bool", False),
    "forceReachabilityPublic": ("bool", False),
    "gossipsubHeartbeatInitialDelay": ("duration", 0.0),
    "gossipsubHeartbeatInterval": ("duration", 0.0), "hostAddrs": ("string", None),
    "i": ("bool", False), "id": ("string", None), "idleTimeout": ("duration", 0.0),
    "listen": ("string", None), "metricsAddr": ("string", None), "muxer": ("string", "yamux"),
    "natPortMap": ("bool", False), "noListenAddrs": ("bool", False), "noise": ("bool", True),
    "persistentConnMaxMsgSize": ("int", 4194304), "pprof": ("bool", False),
    "pprofPort": ("uint", 0), "pubsub": ("bool", False), "pubsubRouter": ("string", "gossipsub"),
    "pubsubSign": ("bool", True), "pubsubSignStrict": ("bool", True), "q": ("bool", False),
    "quic": ("bool", True), "relay": ("bool", True), "relayActive": ("bool", False),
    "relayBufferSize": ("int", 16777216), "relayDataLimit": ("int", 4294967296),
    "relayDiscovery": ("bool", True), "relayHop": ("bool", False), "relayHopLimit": ("int", 0),
    "relayMaxCircuits": ("int", 16), "relayMaxReservations": ("int", 128),
    "relayService": ("bool", True), "relayTimeLimit": ("duration", 1800.0), "tls": ("bool", True),
    "trustedRelays": ("string", None), "plaintext": ("bool", True),
}
# The listen default is ours ($P2PD_HOME/p2pd.sock instead of /unix/tmp/p2pd.sock); -echo is
# off unless given (hivemind's fork has no echo protocol).


def test_echo_is_off_unless_given():
    assert daemon_flags().flags["echo"].default is False
GOOD = {"string": "/ip4/127.0.0.1/tcp/0", "int": "0x10", "uint": "7", "duration": "1m30s"}
PARSED = {"string": "/ip4/127.0.0.1/tcp/0", "int": 16, "uint": 7, "duration": 90.0}


def _kind(name: str) -> str:
    from p2pd.goflags import Duration, Uint

    kind = daemon_flags().flags[name].kind
    return {bool: "bool", int: "int", str: "string", Duration: "duration", Uint: "uint"}[kind]


@pytest.mark.parametrize("name", sorted(GO_DAEMON_FLAGS))
def test_every_go_daemon_flag_is_declared_with_its_go_type_and_default(name):
    kind, default = GO_DAEMON_FLAGS[name]
    assert _kind(name) == kind
    assert daemon_flags().flags[name].default == default


@pytest.mark.parametrize("name", sorted(GO_DAEMON_FLAGS))
def test_every_go_daemon_flag_parses_in_each_go_form(name):
    kind, _ = GO_DAEMON_FLAGS[name]
    fs = daemon_flags()
    if kind == "bool":
        assert fs.parse([f"-{name}"]) == ({name: True}, [])
        assert fs.parse([f"--{name}=false"]) == ({name: False}, [])
        assert fs.parse([f"-{name}=1", "rest"]) == ({name: True}, ["rest"])
        assert fs.parse([f"-{name}=F"]) == ({name: False}, [])
        bad = f'^invalid boolean value "yes" for -{name}: parse error$'
        with pytest.raises(FlagError, match=bad):
            fs.parse([f"-{name}=yes"])
    else:
        assert fs.parse([f"-{name}", GOOD[kind]]) == ({name: PARSED[kind]}, [])
        assert fs.parse([f"--{name}={GOOD[kind]}"]) == ({name: PARSED[kind]}, [])
        with pytest.raises(FlagError, match=f"^flag needs an argument: -{name}$"):
            fs.parse([f"-{name}"])
        if kind != "string":
            bad = f'^invalid value "1x" for flag -{name}: parse error$'
            with pytest.raises(FlagError, match=bad):
                fs.parse([f"-{name}=1x"])


@pytest.mark.parametrize(
    "kind, text, value",
    [("int", "-12", -12), ("int", "0b101", 5), ("int", "010", 8), ("int", "1_000", 1000),
     ("uint", "0o17", 15), ("duration", "0", 0.0), ("duration", "1.5h", 5400.0),
     ("duration", "250ms", 0.25), ("duration", "1h2m3s4ms", 3723.004), ("duration", "-1s", -1.0),
     ("duration", ".5s", 0.5), ("duration", "2us", 2e-6)],
)
def test_numbers_and_durations_parse_as_go_parses_them(kind, text, value):
    name = {"int": "connHi", "uint": "pprofPort", "duration": "connGrace"}[kind]
    assert daemon_flags().parse([f"-{name}={text}"])[0][name] == pytest.approx(value)


@pytest.mark.parametrize(
    "argv, message",
    [(["-connGrace=5"], 'invalid value "5" for flag -connGrace: parse error'),
     (["-connGrace=1d"], 'invalid value "1d" for flag -connGrace: parse error'),
     (["-pprofPort=-1"], 'invalid value "-1" for flag -pprofPort: parse error'),
     (["-connHi=99999999999999999999"],
      'invalid value "99999999999999999999" for flag -connHi: value out of range'),
     (["-connHi=1__0"], 'invalid value "1__0" for flag -connHi: parse error'),
     (["---dht"], "bad flag syntax: ---dht"),
     (["-=x"], "bad flag syntax: -=x")],
)
def test_bad_numbers_and_syntax_get_gos_messages(argv, message):
    with pytest.raises(FlagError) as err:
        daemon_flags().parse(argv)
    assert str(err.value) == message
