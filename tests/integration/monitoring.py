"""Real Alertmanager and Prometheus processes for the tests, and a small HTTP server that records POSTs.

Both are Debian's packages (``make monitoring-tools`` installs them); each runs on a free port of 127.0.0.1
with its configuration and storage in a temporary folder, and is stopped by the test.
"""

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack.processes import free_port


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise AssertionError(f"none of {names} is installed: run `make monitoring-tools`")


def http_json(url: str, body: Any = None, timeout_s: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        text = response.read()
    return json.loads(text) if text else None


class Server:
    """A process with a log file; ``stop`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], ready_url: str, timeout_s: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout_s}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


class Alertmanager(Server):
    """``prometheus-alertmanager`` paging a webhook (``pages_url``); HA clustering off (it would bind 9094)."""

    def __init__(self, folder: Path, pages_url: str) -> None:
        super().__init__(folder, "alertmanager")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "data").mkdir(exist_ok=True)
        self.config = folder / "alertmanager.yml"
        # One group per incident, sent at once; the same alert again is not a new page for an hour.
        self.config.write_text(
            "route:\n"
            "  receiver: pages\n"
            "  group_by: [incident_id]\n"
            "  group_wait: 100ms\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 1h\n"
            "receivers:\n"
            "  - name: pages\n"
            "    webhook_configs:\n"
            f"      - url: {pages_url}\n"
            "        send_resolved: true\n"
        )

    def start(self) -> None:
        self._spawn(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={self.config}",
                f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            f"{self.url}/-/ready",
        )

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (active, silenced or not), with every label given."""
        alerts: list[dict[str, Any]] = http_json(f"{self.url}/api/v2/alerts")
        return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]

    def silence(self, minutes: float = 60, **labels: str) -> str:
        now = time.time()
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in labels.items()],
            "startsAt": _iso(now - 1),
            "endsAt": _iso(now + minutes * 60),
            "createdBy": "tests",
            "comment": "planned maintenance",
        }
        silence_id: str = http_json(f"{self.url}/api/v2/silences", body)["silenceID"]
        return silence_id


class Prometheus(Server):
    """``prometheus`` with a given configuration file, its storage in the folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, config: Path) -> None:
        (self.folder / "data").mkdir(exist_ok=True)
        self._spawn(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            f"{self.url}/-/ready",
            timeout_s=60,
        )

    def query(self, expression: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        result: list[dict[str, Any]] = http_json(url)["data"]["result"]
        return result


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class Recorder:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it, by path; ``fail`` answers 503."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any, dict[str, str]]] = []
        self.fail = False
        self.refused = 0
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the base class's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with recorder._lock:
                    if recorder.fail:
                        recorder.refused += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    recorder.bodies.append((self.path, json.loads(body), dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def posted(self, path: str) -> list[Any]:
        with self._lock:
            return [body for where, body, _ in self.bodies if where == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
