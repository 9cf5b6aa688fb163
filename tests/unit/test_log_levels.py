"""Log levels: the flags and [log] level, and one line per record below debug."""

from __future__ import annotations

import logging

import pytest

from p2pd.config import resolve
from p2pd.errors import ConfigError
from p2pd.logs import OneLineFormatter


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        import sys

        return logging.LogRecord("p2pd.net.swarm", logging.WARNING, __file__, 1,
                                 "dial to %s failed", ("peer",), sys.exc_info())


def test_below_debug_an_exception_is_named_in_the_same_line():
    line = OneLineFormatter(tracebacks=False).format(_record(ConnectionRefusedError(
        "[Errno 111] Connection refused\nsecond line")))
    assert line == ("WARNING p2pd.net.swarm: dial to peer failed "
                    "(ConnectionRefusedError: [Errno 111] Connection refused)")
    assert "Traceback" not in line and "\n" not in line


def test_at_debug_the_traceback_is_kept():
    text = OneLineFormatter(tracebacks=True).format(_record(TimeoutError("slow")))
    assert "Traceback (most recent call last)" in text and "TimeoutError: slow" in text


@pytest.mark.parametrize("flags, doc, env, level", [
    ({}, None, None, "warning"), ({"v": True}, None, None, "info"),
    ({"vv": True}, None, None, "debug"), ({"q": True}, None, None, "error"),
    ({}, {"log": {"level": "INFO"}}, None, "info"),
    ({}, {"log": {"level": "error"}}, "debug", "debug"),
    ({"v": True}, {"log": {"level": "error"}}, None, "info"),
])
def test_the_log_level_comes_from_flags_then_env_then_config(monkeypatch, flags, doc, env,
                                                            level):
    if env is None:
        monkeypatch.delenv("P2PD_DEBUG_LOG", raising=False)
    else:
        monkeypatch.setenv("P2PD_DEBUG_LOG", env)
    assert resolve(flags, doc).log_level == level


def test_an_unknown_level_is_refused():
    with pytest.raises(ConfigError, match=r"\[log\] level"):
        resolve({}, {"log": {"level": "chatty"}})
