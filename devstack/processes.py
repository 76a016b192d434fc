"""Start a service, wait until it is ready, stop it by its pid: what `make up`, the benchmarks and the tests share.

* ``Child``: one program started by us, its output in a log file; stopped only through its own pid.
* ``stop_pid``: SIGTERM, wait, then SIGKILL, for a process we started earlier (`make down` reads its pid file).
* ``wait_until``: poll a readiness check while the process lives; ``http_status``: a GET's (or POST's) status.
"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout_s: float = 2.0, body: bytes | None = None) -> int | None:
    """The HTTP status of a GET (a JSON POST when ``body`` is given), or None when nothing answered."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def wait_until(
    ready: Callable[[], bool], alive: Callable[[], bool], timeout_s: float, poll_s: float = 0.2
) -> Literal["ready", "exited", "timeout"]:
    """Poll ``ready()`` until it is true, the process is no longer ``alive()``, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return "exited"
        if ready():
            return "ready"
        time.sleep(poll_s)
    return "timeout"


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def stop_pid(pid: int, timeout_s: float) -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s`` for it to go, then SIGKILL; True when it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


class Child:
    """One program started by us, its output appended to ``log_path``; stopped only through its own pid."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        new_session: bool = False,
        pipe_stdout: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.new_session = new_session  # Ctrl-C reaches only the parent, which stops its children itself
        self.pipe_stdout = pipe_stdout  # stdout to ``process.stdout`` (read by the parent), stderr to the log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert not self.alive(), f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start #{self.starts + 1} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE if self.pipe_stdout else log,
                stderr=log if self.pipe_stdout else subprocess.STDOUT,
                start_new_session=self.new_session,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, url: str, timeout_s: float = 60, body: bytes | None = None) -> None:
        """Until ``url`` answers 200 (GET, or POST of ``body``); AssertionError if the process exits or is slow."""
        outcome = wait_until(lambda: http_status(url, body=body) == 200, self.alive, timeout_s)
        if outcome == "exited":
            raise AssertionError(f"{self.name} exited while starting\n{self.log_tail()}")
        if outcome == "timeout":
            raise AssertionError(f"{self.name} not ready after {timeout_s}s\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait; the exit code. A process still running after ``timeout_s`` is a failure."""
        assert self.process is not None, f"{self.name} was never started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout_s}s\n{self.log_tail()}") from None

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (None if never started)."""
        if self.process is None:
            return None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs: killing it", self.name, self.pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        return self.process.returncode

    def cleanup(self) -> None:
        self.kill()

    def rss_mib(self) -> float:
        """Resident memory of the process, in MiB (0 when it is not running)."""
        if not self.alive():
            return 0.0
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return f"--- {self.name} log (tail) ---\n{self.log_text()[-chars:]}"
