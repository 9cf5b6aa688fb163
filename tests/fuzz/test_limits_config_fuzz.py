"""``[limits]`` in config.toml: any value for any key either gives limits that check out or
a ConfigError naming ``limits.KEY``, never another exception."""

from __future__ import annotations

import tomllib
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pd.config import DEFAULT_CONFIG_TOML, resolve
from p2pd.errors import ConfigError
from p2pd.net.rcmgr import Limits

KEYS = [f.name for f in fields(Limits) if f.name not in ("max_conns_per_peer",
                                                         "max_streams_per_conn")]

values = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["16MiB", "1GB", "0", "-1MiB", "1e3", "512KiB", "lots", ""]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(KEYS), values)
def test_any_value_is_taken_or_refused_with_its_key_named(key, value):
    try:
        config = resolve({}, {"limits": {key: value}})
    except ConfigError as exc:
        assert f"limits.{key}" in str(exc), str(exc)
        return
    config.limits.check()
    got = getattr(config.limits, key)
    if not isinstance(value, str):
        assert got == value


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda k: k not in {f.name for f in
                                                                    fields(Limits)}
                                               and k not in ("max_control_frame",
                                                             "control_idle_timeout",
                                                             "max_control_clients")))
def test_an_unknown_key_is_named(key):
    try:
        resolve({}, {"limits": {key: 1}})
    except ConfigError as exc:
        assert f"limits.{key}" in str(exc)
    else:
        raise AssertionError(f"limits.{key} accepted")


def test_the_documented_defaults_are_the_limits_defaults():
    doc = tomllib.loads(DEFAULT_CONFIG_TOML)
    assert resolve({}, doc).limits == Limits()
    assert set(doc["limits"]) >= set(KEYS)
