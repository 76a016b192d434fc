"""``make up`` / ``make down`` / ``make logs`` / ``make status``: the whole pipeline on one machine.

Services run in the background with their output and pid files in ``.run/`` (git-ignored).
Start and stop are idempotent; a service already running is left alone.
"""

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import monitoring  # scripts/monitoring.py, beside this file

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
PYTHON = sys.executable


@dataclass(frozen=True)
class Service:
    name: str
    folder: str
    args: tuple[str, ...] = ()

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return RUN_DIR / f"{self.name}.log"


ML_SERVICE = Service("ml-service", "fastapi-ml-service")
PROCESSOR = Service("processor", "processor")
SIMULATOR = Service("simulator", "log-simulator")
SERVICES = (ML_SERVICE, PROCESSOR, SIMULATOR)


def ml_service_url() -> str:
    return os.environ.get("ML_SERVICE_URL", f"http://127.0.0.1:{os.environ.get('ML_PORT', '8000')}").rstrip("/")


def processor_metrics_url() -> str | None:
    port = os.environ.get("PROCESSOR_METRICS_PORT", "9108")
    host = os.environ.get("PROCESSOR_METRICS_HOST", "127.0.0.1")
    return None if port == "0" else f"http://{host}:{port}"


def running_pid(service: Service) -> int | None:
    """The service's pid if that process is alive and still runs our ``main.py`` (pids get reused)."""
    try:
        pid = int(service.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if b"main.py" in cmdline else None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(service: Service) -> int | None:
    """Start the service in the background; its new pid, or None if it was already running."""
    if running_pid(service):
        return None
    RUN_DIR.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if sys.stdout.isatty():
        env.setdefault("FORCE_COLOR", "1")  # the processor's log file is followed on this terminal
    if service is PROCESSOR and (alertmanager := monitoring.running_alertmanager_url()):
        env.setdefault("ALERTMANAGER_URL", alertmanager)  # `make monitoring-up` runs one: incidents go there
    with open(service.log_file, "ab") as log:
        process = subprocess.Popen(
            [PYTHON, "main.py", *service.args],
            cwd=ROOT / service.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C on `make up` stops following, not the services
        )
    service.pid_file.write_text(str(process.pid))
    return process.pid


def stop(service: Service, timeout_s: float = 20.0) -> bool:
    pid = running_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
    service.pid_file.unlink(missing_ok=True)
    return True


def is_running(service: Service) -> bool:
    return running_pid(service) is not None


def wait_until(check: Callable[[], bool], what: str, service: Service, timeout_s: float = 60.0) -> None:
    log = service.log_file.relative_to(ROOT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if running_pid(service) is None:
            raise SystemExit(f"error: {service.name} exited while starting; see {log}")
        time.sleep(0.3)
    raise SystemExit(f"error: {service.name} not {what} after {timeout_s:.0f}s; see {log}")


def model_path() -> Path:
    return Path(os.environ.get("MODEL_PATH", ROOT / "fastapi-ml-service" / "model.joblib"))


def model_format(metadata_path: Path) -> int | None:
    """The format recorded in a model's metadata file (None when there is none, or it is unreadable)."""
    try:
        found = json.loads(metadata_path.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, int) else None


def up(follow: bool) -> None:
    if subprocess.call([PYTHON, "kafka-docker/main.py", "up"], cwd=ROOT) != 0:
        raise SystemExit(1)
    # Imported here: ml_service.model imports scikit-learn, which only `up` needs.
    from ml_service.model import FORMAT_VERSION, metadata_path_for

    found = model_format(metadata_path_for(model_path()))
    stale = found not in (None, FORMAT_VERSION)
    if stale or not model_path().exists():
        print(
            f"The model was trained by an older version (format {found}): training a new one (make train) ..."
            if stale
            else "No trained model yet: training one (make train) ...",
            flush=True,
        )
        if subprocess.call([PYTHON, "save_model.py"], cwd=ROOT / "fastapi-ml-service") != 0:
            raise SystemExit("error: training failed")
    for service in SERVICES:
        new_pid = start(service)
        state = f"started (pid {new_pid}" if new_pid else f"already running (pid {running_pid(service)}"
        print(f"{service.name}: {state}, log {service.log_file.relative_to(ROOT)})")
        if service is ML_SERVICE:
            wait_until(lambda: http_ok(f"{ml_service_url()}/ready"), "ready", service)
            print(f"ml-service: ready at {ml_service_url()}")
        else:
            time.sleep(1.0)
            wait_until(functools.partial(is_running, service), "running", service, timeout_s=5)
    print("All services are up. `make logs` follows the processor, `make status` checks health, `make down` stops.")
    if follow:
        logs()


def down() -> None:
    for service in reversed(SERVICES):
        print(f"{service.name}: {'stopped' if stop(service) else 'was not running'}")
    subprocess.call([PYTHON, "kafka-docker/main.py", "down"], cwd=ROOT)


def logs() -> None:
    """Follow the processor's output like ``tail -f`` until Ctrl-C."""
    path = PROCESSOR.log_file
    if not path.exists():
        raise SystemExit("error: no processor output yet: run `make up` first")
    print(f"Following {path.relative_to(ROOT)} (Ctrl-C stops following; the services keep running)", flush=True)
    try:
        with open(path, "rb") as log:
            log.seek(max(0, path.stat().st_size - 4000))
            log.readline()  # skip a partial line
            while True:
                line = log.readline()
                if line:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
    except KeyboardInterrupt:
        print()


def status() -> int:
    healthy = subprocess.call([PYTHON, "kafka-docker/main.py", "status"], cwd=ROOT) == 0
    for service in SERVICES:
        pid = running_pid(service)
        if pid is None:
            print(f"{service.name}: DOWN")
            healthy = False
            continue
        detail = ""
        if service is ML_SERVICE:
            ready = http_ok(f"{ml_service_url()}/ready")
            detail = f", {ml_service_url()} {'ready' if ready else 'NOT READY'}"
            healthy &= ready
        elif service is PROCESSOR and processor_metrics_url():
            alive = http_ok(f"{processor_metrics_url()}/health")
            detail = f", {processor_metrics_url()}/metrics {'healthy' if alive else 'NOT HEALTHY'}"
            healthy &= alive
        print(f"{service.name}: running (pid {pid}{detail}, log {service.log_file.relative_to(ROOT)})")
    return 0 if healthy else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--follow", type=int, default=1)
    sub.add_parser("down")
    sub.add_parser("logs")
    sub.add_parser("status")
    options = parser.parse_args()
    if options.command == "up":
        up(bool(options.follow))
    elif options.command == "down":
        down()
    elif options.command == "logs":
        logs()
    elif options.command == "status":
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
