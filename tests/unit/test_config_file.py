"""config.toml as a person edits it: every unknown key and bad value named with the file
and its line; one value set in place with the rest of the file kept."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from p2pd.config import DEFAULT_CONFIG_TOML, resolve, resolve_file
from p2pd.errors import ConfigError
from p2pd.tomlfile import key_line, literal, parse_value, set_value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old, new, message", [
    ("gc_watermark = 90", "gc_watermark = 150",
     "datastore.gc_watermark is a percent: 1 to 100 (got 150)"),
    ("[datastore]", "[datastore]\nstorage_maxx = 3",
     "unknown key datastore.storage_maxx (did you mean storage_max?)"),
    ('level = "warning"', 'level = "chatty"',
     "[log] level must be debug, info, warning or error (got 'chatty')"),
    ('grace = "120s"', 'grace = "2 minutes"',
     "connmgr.grace: invalid duration '2 minutes'"),
    ('memory = "256MiB"', 'memory = "lots"', "limits.memory: invalid size 'lots'"),
    ('memory = "256MiB"', 'memroy = "1MiB"', "unknown key limits.memroy"),
    ("cache_mib = 64", 'cache_mib = "64"',
     "blockstore.cache_mib has the wrong type ('64'; it must be an integer)"),
    ('mode = "auto"', 'mode = "full"', "unknown DHT mode 'full'"),
    ('provide = "roots"', 'provide = "everything"', "bitswap.provide must be"),
    ('listen = "127.0.0.1:8080"', 'listen = "localhost:http"',
     "[http] listen: port 'http' is not a number"),
    ("low = 256", "low = 600", "connLo <= connHi"),
])
def test_a_bad_value_or_unknown_key_is_named_with_the_file_and_its_line(
        tmp_path, old, new, message):
    path = tmp_path / "config.toml"
    text = DEFAULT_CONFIG_TOML.replace(old, new)
    assert text != DEFAULT_CONFIG_TOML
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_file({}, path)
    line = _line_of(text, new.splitlines()[-1])
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value)


def test_every_unknown_key_and_table_is_named_at_once(tmp_path):
    path = tmp_path / "config.toml"
    text = DEFAULT_CONFIG_TOML.replace("quic = true", "quic = true\nquick = 1\nport_mapp = 2")
    text += "\n[gatway]\nlisten = \"x\"\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_file({}, path)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{path}:{_line_of(text, 'quick')}: unknown key swarm.quick (did you mean quic?)",
        f"{path}:{_line_of(text, 'port_mapp')}: unknown key swarm.port_mapp "
        "(did you mean port_map?)",
        f"{path}:{_line_of(text, '[gatway]')}: unknown table [gatway] (known tables: "
        "autonat, bitswap, blockstore, bootstrap, connmgr, control, datastore, dht, http, "
        "limits, log, metrics, perf, pubsub, relay, swarm)",
    ]


def test_the_documented_defaults_are_all_known_keys_and_a_flag_still_wins(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(DEFAULT_CONFIG_TOML.replace("low = 256", "low = 100"))
    assert resolve_file({}, path).conn_low == 100
    assert resolve_file({"connLo": 50}, path).conn_low == 50
    # a bad flag is the flag's error, not blamed on the file
    with pytest.raises(ConfigError) as err:
        resolve_file({"connLo": 9999}, path)
    assert str(path) not in str(err.value)
    assert resolve_file({}, tmp_path / "missing.toml").conn_manager  # no file: defaults


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[swarm]\nquic = true\nport_map = yes\n")
    with pytest.raises(ConfigError) as err:
        resolve_file({}, path)
    assert str(err.value) == f"{path}:3:12: Invalid value (TOML syntax)"


def test_key_line_finds_tables_keys_and_quoted_keys():
    text = '# c\n[swarm]\nlisten = [\n  "/a",\n]\n\n[ "log" ]\n"level" = "info"\nx.y = 1\n'
    assert key_line(text, "swarm") == 2
    assert key_line(text, "swarm.listen") == 3
    assert key_line(text, "log") == 7
    assert key_line(text, "log.level") == 8
    assert key_line(text, "log.missing") is None


def test_set_value_replaces_in_place_and_keeps_every_comment():
    text = DEFAULT_CONFIG_TOML
    out = set_value(text, "swarm", "listen", ["/ip4/127.0.0.1/tcp/4001"])
    doc = tomllib.loads(out)
    assert doc["swarm"]["listen"] == ["/ip4/127.0.0.1/tcp/4001"]
    assert [ln for ln in out.splitlines() if ln.startswith("#")] == [
        ln for ln in text.splitlines() if ln.startswith("#")]
    before = tomllib.loads(text)
    before["swarm"]["listen"] = doc["swarm"]["listen"]
    assert doc == before
    added = tomllib.loads(set_value(out, "datastore", "new_key", 5))
    assert added["datastore"]["new_key"] == 5 and added["dht"] == before["dht"]
    table = tomllib.loads(set_value("[a]\nb = 1\n", "c", "d", "x"))
    assert table == {"a": {"b": 1}, "c": {"d": "x"}}


def test_values_from_a_command_line_are_toml_or_plain_text():
    assert parse_value("90") == 90
    assert parse_value("true") is True
    assert parse_value('["/a", "/b"]') == ["/a", "/b"]
    assert parse_value("10GB") == "10GB"
    assert parse_value('"quoted"') == "quoted"
    assert parse_value("127.0.0.1:8080") == "127.0.0.1:8080"


_values = st.recursive(
    st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(st.sampled_from(sorted(tomllib.loads(DEFAULT_CONFIG_TOML))), _names, _values)
@example("autonat", "a", "\x7f")  # DEL: JSON leaves it bare, TOML refuses it bare
def test_any_value_set_reads_back_and_leaves_the_rest_alone(section, key, value):
    out = set_value(DEFAULT_CONFIG_TOML, section, key, value)
    doc = tomllib.loads(out)
    assert doc[section][key] == value
    want = tomllib.loads(DEFAULT_CONFIG_TOML)
    want[section][key] = value
    assert doc == want
    assert tomllib.loads(f"v = {literal(value)}")["v"] == value


def test_the_home_config_resolves_with_no_unknown_key():
    resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
