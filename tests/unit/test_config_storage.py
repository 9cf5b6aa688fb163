"""[datastore] storage limits: sizes as kubo writes them, a percent watermark, bad values
refused with the key's name."""

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pd.config import DEFAULT_CONFIG_TOML, parse_size, resolve
from p2pd.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "size"),
    [("10GB", 10**10), ("512MiB", 512 << 20), ("1.5GB", 1_500_000_000), ("2KiB", 2048),
     ("10 kB", 10_000), ("1000", 1000), (0, 0), (123, 123)],
)
def test_sizes_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10XB", "-1", "GB", "", "1e9", True, -5])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ConfigError):
        parse_size(text)


@given(st.text(max_size=20))
def test_any_size_text_parses_or_is_a_config_error(text):
    try:
        assert parse_size(text) >= 0
    except ConfigError:
        pass


def test_the_home_config_limits_storage_as_kubo_does():
    c = resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML))
    assert (c.storage_max, c.gc_watermark) == (10**10, 90)
    assert resolve({}).storage_max == 0  # harness mode: a throwaway repo, no limit


def test_storage_settings_are_read_and_checked():
    c = resolve({}, {"datastore": {"storage_max": "64MiB", "gc_watermark": 50}})
    assert (c.storage_max, c.gc_watermark) == (64 << 20, 50)
    with pytest.raises(ConfigError, match="gc_watermark"):
        resolve({}, {"datastore": {"gc_watermark": 0}}).validate()
    with pytest.raises(ConfigError, match="invalid size"):
        resolve({}, {"datastore": {"storage_max": "lots"}})


def test_the_memtable_size_is_read_and_checked():
    assert resolve({}, tomllib.loads(DEFAULT_CONFIG_TOML)).memtable_bytes == 64 << 20
    assert resolve({}, {"datastore": {"memtable_mib": 4}}).memtable_bytes == 4 << 20
    with pytest.raises(ConfigError, match="memtable_mib"):
        resolve({}, {"datastore": {"memtable_mib": 0}}).validate()
    assert resolve({}, {"datastore": {"block_cache_mib": 2}}).db_cache_bytes == 2 << 20
    with pytest.raises(ConfigError, match="block_cache_mib"):
        resolve({}, {"datastore": {"block_cache_mib": 0}}).validate()
