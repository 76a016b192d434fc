"""``make up`` / ``make down`` / ``make logs`` / ``make status`` / ``make train``: the pipeline on one machine.

Services run in the background with their output and pid files in ``.run/`` (git-ignored).
Start and stop are idempotent; a service already running is left alone. ``up`` checks every port it needs
before it starts anything, and stops what it started if a later step fails. The ML service it starts gets
an admin key (``ML_API_KEY``, or one generated into ``.run/``) so that ``make train`` can reload the model.
"""

import argparse
import functools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import monitoring  # scripts/monitoring.py, beside this file
from devstack.processes import http_status, stop_pid
from devstack.processes import wait_until as devstack_wait_until

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("STACK_RUN_DIR", ROOT / ".run")).resolve()  # another folder: for tests
ADMIN_KEY_FILE = RUN_DIR / "ml-api-key"
PYTHON = sys.executable
RUN_MARK = "──── make up: run started "


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


def shown(path: Path) -> Path:
    """A path as the user types it: relative to the repository when it is inside."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """Who listens on ``port``, as ", held by pid N (command)", when /proc tells (Linux); else an empty string."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                command = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                command = command.strip()
                return f", held by pid {fd_dir.parent.name} ({command[:80]}{'…' if len(command) > 80 else ''})"
        except OSError:
            continue
    return ""


def port_problems() -> list[str]:
    """One line per port ``up`` needs that another program holds (ports of our own running services are fine)."""
    from local_kafka.cli import check_ports

    ml_port = int(os.environ.get("ML_PORT", "8000"))
    wanted: list[tuple[Service, int, str, str]] = [
        (ML_SERVICE, ml_port, "ML service", f"ML_PORT={ml_port + 1}"),
    ]
    metrics_port = int(os.environ.get("PROCESSOR_METRICS_PORT", "9108"))
    if metrics_port:
        wanted.append((PROCESSOR, metrics_port, "processor metrics", f"PROCESSOR_METRICS_PORT={metrics_port + 1}"))
    problems = [
        f"port {port} on 127.0.0.1 ({what}) is already in use{port_owner(port)}: stop that program, "
        f"or run `{fix} make up`"
        for service, port, what, fix in wanted
        if running_pid(service) is None and port_in_use(port)
    ]
    problems += [
        f"{line}{port_owner(int(line.split()[1]))}: stop that program, or run "
        "`KAFKA_LOCAL_PORT=9094 KAFKA_LOCAL_CONTROLLER_PORT=9095 KAFKA_BOOTSTRAP_SERVERS=localhost:9094 make up`"
        for line in check_ports()
    ]
    return problems


def admin_key() -> str | None:
    """The ML service's admin key: ML_API_KEY when set, else the one ``up`` generated (None if none)."""
    if os.environ.get("ML_API_KEY"):
        return os.environ["ML_API_KEY"]
    try:
        return ADMIN_KEY_FILE.read_text().strip() or None
    except OSError:
        return None


def running_pid(service: Service) -> int | None:
    """The service's pid if that process is alive and still runs our ``main.py`` (pids get reused).

    A process forked a moment ago has no command line until it executes Python: it counts as ours, a zombie
    (exited, not yet reaped) does not."""
    try:
        pid = int(service.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, ProcessLookupError, IndexError):
        return None
    if state == "Z":
        return None
    return pid if not cmdline or b"main.py" in cmdline.split(b"\0") else None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    return http_status(url, timeout) == 200


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
    if service is ML_SERVICE and admin_key() is None:
        ADMIN_KEY_FILE.touch(mode=0o600)
        ADMIN_KEY_FILE.write_text(secrets.token_urlsafe(24))
    if service is ML_SERVICE:
        env["ML_API_KEY"] = admin_key() or ""  # lets `make train` reload the model (127.0.0.1 only)
    if service is PROCESSOR:
        env.setdefault("ML_SERVICE_URL", ml_service_url())
    with open(service.log_file, "ab") as log:
        log.write(f"{RUN_MARK}{time.strftime('%Y-%m-%d %H:%M:%S %Z')} ────\n".encode())
        log.flush()
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
    stop_pid(pid, timeout_s)
    service.pid_file.unlink(missing_ok=True)
    return True


def is_running(service: Service) -> bool:
    return running_pid(service) is not None


def last_log_line(service: Service) -> str:
    """The line of the service's current run that most likely says why it stopped (its last error line)."""
    try:
        text = service.log_file.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text[text.rfind(RUN_MARK) + 1 :].splitlines()[1:] if line.strip()]
    errors = [line for line in lines if re.search(r"\berror\b|Error\b|in use|refused", line)]
    return (errors or lines or [""])[-1][:200]


def wait_until(check: Callable[[], bool], what: str, service: Service, timeout_s: float = 60.0) -> None:
    log = shown(service.log_file)
    outcome = devstack_wait_until(check, lambda: is_running(service), timeout_s, poll_s=0.3)
    if outcome == "exited":
        reason = last_log_line(service)
        raise SystemExit(f"error: {service.name} exited while starting{': ' + reason if reason else ''}; see {log}")
    if outcome == "timeout":
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


def kafka(*args: str) -> int:
    return subprocess.call([PYTHON, "kafka-docker/main.py", *args], cwd=ROOT)


def train_if_needed() -> None:
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


def up(follow: bool) -> None:
    from local_kafka.cli import running_mode

    problems = port_problems()
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit("make up started nothing.")
    kafka_was_running = running_mode() is not None
    started: list[Service] = []
    try:
        if kafka("up") != 0:
            raise SystemExit(1)
        train_if_needed()
        for service in SERVICES:
            new_pid = start(service)
            if new_pid:
                started.append(service)
            state = f"started (pid {new_pid}" if new_pid else f"already running (pid {running_pid(service)}"
            print(f"{service.name}: {state}, log {shown(service.log_file)})")
            if service is ML_SERVICE:
                wait_until(lambda: http_ok(f"{ml_service_url()}/ready"), "ready", service)
                print(f"ml-service: ready at {ml_service_url()}")
            else:
                time.sleep(1.0)
                wait_until(functools.partial(is_running, service), "running", service, timeout_s=5)
    except (SystemExit, KeyboardInterrupt) as exc:
        if isinstance(exc, SystemExit) and isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)  # the reason first, then what is undone
            exc = SystemExit(1)
        # Leave nothing half-started: stop what this run started, keep what was already running.
        for service in reversed(started):
            stop(service)
        stopped = [s.name for s in reversed(started)]
        if not kafka_was_running and running_mode() is not None:
            kafka("down")
            stopped.append("kafka")
        if stopped:
            print(f"make up stopped what it had started: {', '.join(stopped)}", file=sys.stderr)
        raise exc from None
    print("All services are up. `make logs` follows the processor, `make status` checks health, `make down` stops.")
    if follow:
        logs()


def down() -> None:
    for service in reversed(SERVICES):
        print(f"{service.name}: {'stopped' if stop(service) else 'was not running'}")
    kafka("down")


def current_run_offset(path: Path) -> int:
    """Where the processor's current run begins in its log (0 when no run mark is found)."""
    found = path.read_bytes().rfind(RUN_MARK.encode())
    return max(found, 0)


def logs() -> None:
    """Follow the processor's current run like ``tail -f`` until Ctrl-C (its last lines first)."""
    path = PROCESSOR.log_file
    if not path.exists():
        raise SystemExit("error: no processor output yet: run `make up` first")
    run_start = current_run_offset(path)
    with open(path, "rb") as log:
        log.seek(run_start)
        mark = log.readline().decode(errors="replace").strip("─ \n").removeprefix("make up: ")
    print(
        f"Following {shown(path)}, {mark or 'its last lines'} (Ctrl-C stops following; the services keep running)",
        flush=True,
    )
    try:
        with open(path, "rb") as log:
            size = path.stat().st_size
            log.seek(max(run_start, size - 4000))  # nothing of an earlier run
            log.readline()  # the run's mark, or a partial line
            following = is_running(PROCESSOR)
            while True:
                line = log.readline()
                if line:
                    sys.stdout.buffer.write(line)
                    sys.stdout.flush()
                elif not following:
                    print("(the processor is not running: those were its last lines; `make up` starts it)")
                    return
                else:
                    time.sleep(0.2)
    except KeyboardInterrupt:
        print()
    except BrokenPipeError:  # piped into `head`
        os._exit(0)


def state_summary() -> str:
    """``; state: 2 partitions restoring, 1500 services restored, 40 in memory`` from the processor's metrics."""
    try:
        with urllib.request.urlopen(f"{processor_metrics_url()}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return ""

    def value(name: str) -> int:
        found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    restoring = value("processor_state_restoring_partitions")
    restored = value("processor_state_services_restored_total")
    in_memory = value("processor_state_services_in_memory")
    return f"; state: {restoring} partitions restoring, {restored} services restored, {in_memory} in memory"


def status() -> int:
    """A line per part; 0 when everything runs and is healthy, or when nothing runs at all; else 1."""
    kafka_state = kafka("status")  # 0 up, 1 down, 2 never started
    running = 0
    healthy = kafka_state == 0
    for service in SERVICES:
        pid = running_pid(service)
        if pid is None:
            print(f"{service.name}: not running")
            healthy = False
            continue
        running += 1
        detail = ""
        if service is ML_SERVICE:
            ready = http_ok(f"{ml_service_url()}/ready")
            detail = f", {ml_service_url()} {'ready' if ready else 'NOT READY'}"
            healthy &= ready
        elif service is PROCESSOR and processor_metrics_url():
            alive = http_ok(f"{processor_metrics_url()}/health")
            ready = alive and http_ok(f"{processor_metrics_url()}/ready")
            word = "ready" if ready else "RESTORING STATE" if alive else "NOT HEALTHY"
            detail = f", {processor_metrics_url()}/metrics {word}{state_summary()}"
            healthy &= ready
        print(f"{service.name}: running (pid {pid}{detail}, log {shown(service.log_file)})")
    if healthy:
        print("All parts run and are healthy.")
        return 0
    if running == 0 and kafka_state != 0:
        print("Nothing runs: `make up` starts everything.")
        return 0
    print("Some parts are down or unhealthy: `make up` starts what is missing; logs are in .run/.")
    return 1


def train(args: list[str]) -> int:
    """Train; then, when the ML service ``up`` started runs, reload it (it checks the file's sha256)."""
    code = subprocess.call([PYTHON, "save_model.py", *args], cwd=ROOT / "fastapi-ml-service")
    if code != 0 or any(arg in ("-h", "--help") for arg in args):
        return code
    pid = running_pid(ML_SERVICE)
    if pid is None:
        print("The ML service is not running: the next `make up` (or `make serve`) serves the new model.")
        return 0
    key = admin_key()
    request = urllib.request.Request(
        f"{ml_service_url()}/model/reload", method="POST", headers={"X-API-Key": key or ""}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        print(
            f"ml-service (pid {pid}) did not reload ({exc.code} {detail}) and still serves the previous model: "
            "`make down && make up` restarts it with the new one",
            file=sys.stderr,
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"ml-service at {ml_service_url()} did not answer ({exc}): `make status` shows why", file=sys.stderr)
        return 1
    print(
        f"ml-service (pid {pid}) now serves {answer['model_version']} (was {answer['previous_version']}); "
        "it checked the file's sha256 before loading it"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--follow", type=int, default=1)
    sub.add_parser("down")
    sub.add_parser("logs")
    sub.add_parser("status")
    train_parser = sub.add_parser("train")
    train_parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to save_model.py")
    options = parser.parse_args()
    if options.command == "up":
        up(bool(options.follow))
    elif options.command == "down":
        down()
    elif options.command == "logs":
        logs()
    elif options.command == "status":
        return status()
    elif options.command == "train":
        return train(options.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
