"""Processes started inside a lab namespace: output captured to files, stopped at teardown."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

STOP_GRACE = 3.0


class Proc:
    """``ip netns exec NS ARGV`` in its own session; stdout and stderr go to ``logdir/name.*``.

    With ``pipe=True`` stdin and stdout are pipes instead (line protocols such as the js
    nodes'), and only stderr goes to a file."""

    def __init__(
        self,
        ns: str,
        argv: list[str],
        name: str,
        logdir: Path,
        env: dict[str, str] | None = None,
        pipe: bool = False,
        cwd: str | Path | None = None,
    ) -> None:
        self.ns = ns
        self.name = name
        self.argv = list(argv)
        logdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logdir / f"{name}.out"
        self.stderr_path = logdir / f"{name}.err"
        self._err = open(self.stderr_path, "wb")
        self._out = None if pipe else open(self.stdout_path, "wb")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, *self.argv],
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else self._out,
            stderr=self._err,
            start_new_session=True,
            env=env,
            cwd=cwd,
            text=pipe,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self._out else ""

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0, stream: str = "stdout") -> re.Match:
        """Wait until stdout (or ``stream="stderr"``) matches ``pattern``; fail with the
        output so far."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.M)
        read = self.errors if stream == "stderr" else self.output
        while True:
            m = rx.search(read())
            if m:
                return m
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited {self.popen.returncode} before "
                    f"{pattern!r}:\n{self.output()[-2000:]}\n{self.errors()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no {pattern!r} in {timeout} s:\n"
                    f"{self.output()[-2000:]}\n{self.errors()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # children left in the group
        for fh in (self._out, self._err, self.popen.stdin, self.popen.stdout):
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
        return self.popen.returncode
