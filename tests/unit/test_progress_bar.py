"""The CLI progress bar: drawn on a terminal (bytes, percent, rate, ETA), silent elsewhere."""

import io

from p2pd.cli.blocks import ProgressBar


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_shows_bytes_rate_and_eta():
    out = Tty()
    bar = ProgressBar("fetching", stream=out)
    bar.update(50 << 20, 100 << 20, force=True)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\rfetching [##########") and "50%" in text
    assert "50.0 MiB/100.0 MiB" in text and "B/s" in text and "ETA" in text


def test_quiet_in_pipes_and_files():
    out = io.StringIO()  # not a terminal
    bar = ProgressBar("adding", stream=out)
    bar.update(1 << 20, 2 << 20, force=True)
    bar.close()
    assert out.getvalue() == ""


def test_the_last_update_is_drawn_even_when_it_came_too_soon_after_another():
    out = Tty()
    bar = ProgressBar("fetching", stream=out)
    bar.update(1 << 20, 4 << 20, force=True)
    bar.update(4 << 20, 4 << 20)  # within 0.1 s: not drawn now
    assert "100%" not in out.getvalue()
    bar.close()
    assert "100% 4.0 MiB/4.0 MiB" in out.getvalue().rsplit("\r", 1)[-1]
