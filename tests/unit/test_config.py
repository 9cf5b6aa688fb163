"""Config: defaults, config.toml and flags combine with flags winning; bad values are refused."""

import tomllib

import pytest

from p2pd.config import (
    DEFAULT_CONFIG_TOML,
    EPHEMERAL_HOST_ADDRS,
    HOME_HOST_ADDRS,
    load_toml,
    parse_duration,
    resolve,
    write_default_config,
)
from p2pd.errors import ConfigError


def test_harness_mode_defaults_are_the_go_daemons():
    c = resolve({})
    assert c.host_addrs == list(EPHEMERAL_HOST_ADDRS)
    assert not c.conn_manager and not c.dht and not c.pubsub
    assert c.control_listen is None


def test_default_config_file_gives_a_home_node():
    c = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert c.host_addrs == list(HOME_HOST_ADDRS)
    assert c.conn_manager and (c.conn_low, c.conn_high, c.conn_grace) == (256, 512, 120.0)
    assert c.control_idle_timeout == 30.0


def test_flags_win_over_the_file():
    doc = tomllib.loads(DEFAULT_CONFIG_TOML)
    c = resolve(
        {
            "hostAddrs": "/ip4/127.0.0.1/tcp/0, /ip4/127.0.0.1/tcp/0/ws",
            "connLo": 1,
            "connHi": 2,
            "connGrace": "1m30s",
            "listen": "/unix/tmp/x.sock",
            "dhtClient": True,
        },
        doc,
    )
    assert c.host_addrs == ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]
    assert (c.conn_low, c.conn_high, c.conn_grace) == (1, 2, 90.0)
    assert c.control_listen == "/unix/tmp/x.sock"
    assert c.dht and c.dht_mode == "client"


@pytest.mark.parametrize(
    "text,seconds", [("250ms", 0.25), ("2m", 120.0), ("1h1s", 3601.0), ("0", 0.0), (5, 5.0)]
)
def test_go_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "s", "1x", "-1s", "1s2"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_inverted_watermarks_are_refused():
    with pytest.raises(ConfigError, match="connLo"):
        resolve({"connLo": 10, "connHi": 5})


def test_wrong_types_in_the_file_are_refused():
    with pytest.raises(ConfigError, match="connmgr.low"):
        resolve({}, {"connmgr": {"low": "many"}})
    with pytest.raises(ConfigError, match="swarm.listen"):
        resolve({}, {"swarm": {"listen": "/ip4/0.0.0.0/tcp/1"}})


def test_config_file_is_written_once_and_syntax_errors_name_it(tmp_path):
    path = tmp_path / "config.toml"
    assert write_default_config(path)
    assert not write_default_config(path)
    assert load_toml(path)["connmgr"]["high"] == 512
    path.write_text("[connmgr\n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_toml(path)


def test_blockstore_cache_size_comes_from_the_file():
    assert resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML)).blockstore_cache_bytes == 64 << 20
    assert resolve({}, {"blockstore": {"cache_mib": 0}}).blockstore_cache_bytes == 0
    assert resolve({}, {"blockstore": {"cache_mib": 256}}).blockstore_cache_bytes == 256 << 20
    with pytest.raises(ConfigError, match="cache_mib"):
        resolve({}, {"blockstore": {"cache_mib": -1}})


def test_a_home_node_joins_the_network_by_default(monkeypatch):
    monkeypatch.delenv("P2PD_BOOTSTRAP_PEERS", raising=False)
    c = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert c.dht and c.dht_mode == "auto" and c.bootstrap and c.bootstrap_peers == []
    assert c.bitswap and c.provide == "roots"
    monkeypatch.setenv("P2PD_BOOTSTRAP_PEERS", "none")
    c = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert not c.bootstrap
    monkeypatch.setenv("P2PD_BOOTSTRAP_PEERS",
                       "/ip4/127.0.0.1/tcp/1/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ")
    c = resolve({"bootstrapPeers": ""}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert c.bootstrap and c.bootstrap_peers == []  # the flag wins over the environment


def test_provide_strategy_is_checked():
    with pytest.raises(ConfigError, match="provide"):
        resolve({}, {"bitswap": {"provide": "everything"}})


def test_quic_is_on_and_the_home_node_listens_on_tcp_and_quic_port_4001():
    home = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert home.quic and "/ip4/0.0.0.0/udp/4001/quic-v1" in home.host_addrs
    assert "/ip4/0.0.0.0/tcp/4001" in home.host_addrs
    harness = resolve({})
    assert harness.quic and "/ip4/0.0.0.0/udp/0/quic-v1" in harness.host_addrs
    assert not resolve({"quic": False}).quic
    assert not resolve({}, {"swarm": {"quic": False}}).quic
    assert resolve({"quic": True}, {"swarm": {"quic": False}}).quic  # the flag wins
    assert resolve({"quic": True}).not_implemented == []


def test_a_key_left_out_of_config_toml_takes_the_value_the_generated_file_has(monkeypatch):
    """A config.toml without [dht] or [bootstrap] (an older or hand-written one) is a home
    node that joins the network, as the generated file says, not one with both off."""
    monkeypatch.delenv("P2PD_BOOTSTRAP_PEERS", raising=False)
    generated = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    bare = resolve({}, {})
    for key in ("dht", "dht_mode", "bootstrap", "bitswap", "pubsub", "perf", "quic",
                "conn_manager", "nat_port_map", "autonat_client"):
        assert getattr(bare, key) == getattr(generated, key), key
