"""The go daemon's ways of configuring: its flags mapped onto Config, the combinations it
refuses, the flags not implemented yet, and its JSON config (-f/-i) field by field."""

import json
import tomllib

import pytest

from p2pd.config import (
    DEFAULT_CONFIG_TOML,
    GO_DEFAULT_LISTEN,
    json_config_flags,
    not_implemented_flags,
    resolve,
)
from p2pd.errors import ConfigError


def test_hivemind_fork_fields_come_from_their_flags():
    c = resolve({"idleTimeout": 30.0, "persistentConnMaxMsgSize": 1 << 16})
    assert c.idle_timeout == 30.0 and c.persistent_conn_max_msg_size == 1 << 16
    d = resolve({})
    assert d.idle_timeout == 0.0 and d.persistent_conn_max_msg_size == 4 << 20


@pytest.mark.parametrize(
    "flags, field, value",
    [({"q": True}, "quiet", True), ({"quiet": True}, "quiet", True),
     ({"noListenAddrs": True}, "no_listen", True), ({"muxer": "mplex"}, "muxer", "mplex"),
     ({"gossipsubHeartbeatInterval": 0.7}, "gossipsub_heartbeat_interval", 0.7),
     ({"gossipsubHeartbeatInitialDelay": 0.2}, "gossipsub_heartbeat_initial_delay", 0.2),
     ({"echo": True}, "echo", True), ({"pubsubRouter": "floodsub"}, "pubsub_router", "floodsub"),
     ({"dhtClient": True}, "dht_mode", "client"), ({"dhtServer": True}, "dht_mode", "server")],
)
def test_go_flags_set_their_config_fields(flags, field, value):
    assert getattr(resolve(flags), field) == value


def test_go_b_is_strict_and_our_bootstrap_joins_in_the_background():
    assert resolve({"b": True}).bootstrap_strict and resolve({"b": True}).bootstrap
    loose = resolve({"bootstrap": True})
    assert loose.bootstrap and not loose.bootstrap_strict
    assert not resolve({"b": False}).bootstrap


def test_pubsub_is_on_and_perf_off_in_a_home_config_and_harness_mode_follows_the_go_daemon():
    home = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert home.pubsub and not home.perf
    assert resolve({}, {}).pubsub and not resolve({}, {}).perf  # keys absent: same defaults
    assert not resolve({"pubsub": False}, tomllib.loads(DEFAULT_CONFIG_TOML)).pubsub
    harness = resolve({})
    assert not harness.pubsub and not harness.perf
    assert resolve({"pubsub": True}).pubsub


@pytest.mark.parametrize(
    "flags, message",
    [({"forceReachabilityPublic": True, "forceReachabilityPrivate": True},
      "forceReachability must be public or private, not both"),
     ({"noise": False, "tls": False}, "at least one channel security protocol must be enabled"),
     ({"trustedRelays": "/ip4/1.2.3.4/tcp/1", "relay": False}, "relays are not enabled"),
     ({"trustedRelays": "/ip4/1.2.3.4/tcp/1"}, "autoRelay is not enabled"),
     ({"autoRelay": True, "relayDiscovery": False, "dht": True}, "requires either"),
     ({"autoRelay": True}, "without Relay enabled and DHT enabled"),
     ({"muxer": "spdy"}, "unknown muxer 'spdy'"),
     ({"idleTimeout": -1.0}, "-idleTimeout must not be negative"),
     ({"persistentConnMaxMsgSize": 0}, "-persistentConnMaxMsgSize must be between")],
)
def test_combinations_the_go_daemon_refuses_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        resolve(flags)


def test_only_flags_asking_for_something_missing_are_named():
    named = not_implemented_flags({"relay": True, "tls": True, "quic": True, "autonat": False,
                                   "relayTimeLimit": 60.0, "metricsAddr": "127.0.0.1:9",
                                   "relayHopLimit": 0, "connManager": True, "noise": False})
    assert named == []  # -quic and -metricsAddr are implemented
    assert not_implemented_flags({"relay": False, "tls": False, "dht": True}) == []
    assert resolve({"autonat": True}).not_implemented == []
    assert resolve({"autonat": True}).autonat_service
    assert resolve({"forceReachabilityPrivate": True}).force_reachability == "private"
    relay = resolve({"relayService": False, "relayMaxCircuits": 3, "relayTimeLimit": "90s"})
    assert (relay.relay_service, relay.relay_max_circuits, relay.relay_time_limit) == (
        False, 3, 90.0)


UPSTREAM_EXAMPLE = """{
  "ListenAddr": "/unix/tmp/p2pd.sock", "Quiet": false, "ID": "",
  "Bootstrap": {"Enabled": false, "Peers": []}, "DHT": {"Mode": ""},
  "ConnectionManager": {"Enabled": false, "LowWaterMark": 256, "HighWaterMark": 512,
                        "GracePeriod": 120},
  "QUIC": false, "NatPortMap": false,
  "PubSub": {"Enabled": false, "Router": "gossipsub", "Sign": true, "SignStrict": false,
             "GossipSubHeartbeat": {"Interval": 0, "InitialDelay": 0}},
  "Relay": {"Enabled": true, "Active": false, "Hop": false, "Discovery": false, "Auto": false},
  "AutoNat": false, "HostAddresses": [], "AnnounceAddresses": [], "NoListen": false,
  "MetricsAddress": "", "PProf": {"Enabled": false}
}"""


def test_the_upstream_specs_complete_example_config_is_accepted():
    # go-libp2p-daemon specs/CONFIG.md, "Complete (Default Options) Example"
    flags = json_config_flags(UPSTREAM_EXAMPLE, "conf.json")
    c = resolve(flags)
    assert c.control_listen == "/unix/tmp/p2pd.sock" and not c.dht and not c.pubsub
    assert (c.conn_low, c.conn_high, c.conn_grace) == (256, 512, 120.0)
    assert c.not_implemented == [] and c.relay


def test_json_fields_map_to_the_flags_they_stand_for():
    doc = {"listenaddr": "/unix/tmp/x.sock", "Quiet": True, "ID": "/k",
           "Bootstrap": {"Enabled": True, "Peers": "/ip4/1.2.3.4/tcp/1/p2p/Qm1,/dns4/a/tcp/2"},
           "DHT": {"Mode": "full"},
           "ConnectionManager": {"Enabled": True, "LowWaterMark": 1, "HighWaterMark": 2,
                                 "GracePeriod": "1m30s"},
           "PubSub": {"Enabled": True, "Router": "floodsub", "Sign": False,
                      "GossipSubHeartbeat": {"Interval": "700ms", "InitialDelay": 0.05}},
           "HostAddresses": ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
           "AnnounceAddresses": ["/ip4/198.51.100.1/tcp/4001"], "NoListen": True,
           "Security": {"Noise": True}, "Echo": True}
    c = resolve(json_config_flags(json.dumps(doc), "c.json"))
    assert c.control_listen == "/unix/tmp/x.sock" and c.quiet and c.identity_file == "/k"
    assert c.bootstrap_strict and c.bootstrap_peers == ["/ip4/1.2.3.4/tcp/1/p2p/Qm1",
                                                        "/dns4/a/tcp/2"]
    assert c.dht and c.dht_mode == "auto" and c.conn_manager
    assert (c.conn_low, c.conn_high, c.conn_grace) == (1, 2, 90.0)
    assert c.pubsub and c.pubsub_router == "floodsub" and not c.pubsub_sign
    assert (c.gossipsub_heartbeat_interval, c.gossipsub_heartbeat_initial_delay) == (0.7, 0.05)
    assert c.host_addrs == ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]
    assert c.announce_addrs == ["/ip4/198.51.100.1/tcp/4001"] and c.no_listen and c.echo
    assert json_config_flags("{}", "c.json") == {"listen": GO_DEFAULT_LISTEN}
    assert json_config_flags('{"DHT": {"Mode": "client"}}', "c")["dhtClient"] is True


def test_flags_given_beside_the_json_config_win():
    flags = {**json_config_flags('{"ConnectionManager": {"HighWaterMark": 9}}', "c"),
             "connHi": 300}
    assert resolve(flags).conn_high == 300


@pytest.mark.parametrize(
    "text, message",
    [("[1]", "c.json: the JSON config must be an object"),
     ("{", "c.json: not a JSON config"),
     ('{"Bogus": 1}', "c.json: unknown field Bogus"),
     ('{"PubSub": {"Enabld": true}}', "c.json: unknown field PubSub.Enabld"),
     ('{"PubSub": true}', "c.json: PubSub must be an object"),
     ('{"Quiet": "yes"}', "c.json: Quiet must be true or false"),
     ('{"ConnectionManager": {"LowWaterMark": 1.5}}', "LowWaterMark must be an integer"),
     ('{"ConnectionManager": {"GracePeriod": "soon"}}', "GracePeriod: invalid duration"),
     ('{"HostAddresses": [1]}', "HostAddresses must be a list of multiaddr strings"),
     ('{"ListenAddr": "tmp/x.sock"}', "ListenAddr is not a multiaddr"),
     ('{"DHT": {"Mode": "auto"}}', "unknown DHT mode 'auto'")],
)
def test_bad_json_configs_are_refused_naming_the_file_and_field(text, message):
    with pytest.raises(ConfigError, match=message):
        json_config_flags(text, "c.json")


def test_no_announce_filters_by_address_components_and_networks():
    from p2pd.net.host import filter_announced

    addrs = ["/ip4/127.0.0.1/tcp/4001", "/ip4/10.1.2.3/tcp/4001", "/ip4/198.51.100.1/tcp/4001",
             "/ip4/198.51.100.1/tcp/4002/ws", "/ip6/::1/tcp/4001", "/dns4/example.com/tcp/1"]
    assert filter_announced(addrs, ["/ip4/10.0.0.0/ipcidr/8", "/ip4/127.0.0.1",
                                    "/ip4/198.51.100.1/tcp/4002/ws", "/ip6/::/ipcidr/0"]) == [
        "/ip4/198.51.100.1/tcp/4001", "/dns4/example.com/tcp/1"]
    assert filter_announced(addrs, []) == addrs
    assert filter_announced(["/ip4/127.0.0.10/tcp/1"], ["/ip4/127.0.0.1"]) == [
        "/ip4/127.0.0.10/tcp/1"]  # whole components, not text prefixes
    with pytest.raises(ConfigError, match="no_announce"):
        filter_announced(addrs, ["/ip4/10.0.0.0/ipcidr/99"])
    assert resolve({}, {"swarm": {"no_announce": ["/ip4/10.0.0.0/ipcidr/8"]}}).no_announce == [
        "/ip4/10.0.0.0/ipcidr/8"]
    with pytest.raises(ConfigError, match="swarm.no_announce"):
        resolve({}, {"swarm": {"no_announce": "/ip4/10.0.0.0/ipcidr/8"}})


def test_bootstrap_peers_none_turns_bootstrap_off_and_b_with_it_is_refused():
    c = resolve({"bootstrapPeers": "none"}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert not c.bootstrap and c.bootstrap_peers == []
    assert not resolve({"bootstrap": True, "bootstrapPeers": "None"}).bootstrap
    with pytest.raises(ConfigError, match="-b needs bootstrap peers"):
        resolve({"b": True, "bootstrapPeers": "none"})


def test_dht_false_turns_a_home_nodes_dht_off_and_the_mode_flags_pick_the_mode():
    doc = tomllib.loads(DEFAULT_CONFIG_TOML)
    assert resolve({}, doc).dht
    assert not resolve({"dht": False}, doc).dht
    assert resolve({"dht": False, "dhtClient": True}, doc).dht_mode == "client"
    assert resolve({"dht": True}, {"dht": {"mode": "server"}}).dht_mode == "auto"


def test_empty_address_flags_mean_the_defaults_as_in_go():
    from p2pd.config import EPHEMERAL_HOST_ADDRS

    c = resolve({"hostAddrs": "", "announceAddrs": ""})
    assert c.host_addrs == list(EPHEMERAL_HOST_ADDRS) and c.announce_addrs == []


def test_the_pubsub_router_is_checked_when_pubsub_is_on_as_go_does():
    assert resolve({"pubsubRouter": "randomsub"}).pubsub_router == "randomsub"
    with pytest.raises(ConfigError, match="unknown pubsub router 'randomsub'"):
        resolve({"pubsub": True, "pubsubRouter": "randomsub"})


@pytest.mark.parametrize(
    "flags, mode",
    [({"dht": True, "dhtClient": True}, "auto"), ({"dhtClient": True, "dhtServer": True}, "client"),
     ({"dhtServer": True}, "server"), ({"dht": True, "dhtServer": True}, "auto")],
)
def test_several_dht_flags_resolve_with_gos_precedence(flags, mode):
    assert resolve(flags).dht_mode == mode


def test_tls_and_noise_flags_pick_the_channel_security_in_order_of_preference():
    assert resolve({}).security == ["tls", "noise"]
    assert resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML)).security == ["tls", "noise"]
    assert resolve({"tls": False}).security == ["noise"]
    assert resolve({"noise": False, "tls": True}).security == ["tls"]
    doc = {"swarm": {"security": ["noise", "tls"]}}
    assert resolve({}, doc).security == ["noise", "tls"]
    assert resolve({"tls": True}, doc).security == ["noise", "tls"]  # kept where it was
    assert resolve({"tls": True}, {"swarm": {"security": ["noise"]}}).security == ["noise", "tls"]


@pytest.mark.parametrize("security, message", [
    (["plaintext"], "unknown security protocol 'plaintext'.*plaintext is never accepted"),
    (["noise", "noise"], "names a protocol twice"),
    ([], "at least one channel security protocol"),
])
def test_bad_security_lists_are_refused(security, message):
    with pytest.raises(ConfigError, match=message):
        resolve({}, {"swarm": {"security": security}})
    with pytest.raises(ConfigError, match="at least one channel security protocol"):
        resolve({"noise": False, "tls": False, "plaintext": True})
