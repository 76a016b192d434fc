"""``make monitoring-up`` / ``make monitoring-down``: Prometheus and Alertmanager beside the running stack.

Both are Debian's packages (``make monitoring-tools``), run with the configuration in ``monitoring/`` and their
data in ``.run/monitoring/``. Alertmanager listens on 9193, not its usual 9093: that is the local Kafka
broker's controller port. Its clustering port (9094) is switched off. ``make up`` points the processor at
this Alertmanager while it runs (unless ``ALERTMANAGER_URL`` says otherwise).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("STACK_RUN_DIR", ROOT / ".run")).resolve()  # as scripts/stack.py: tests move it
DATA_DIR = RUN_DIR / "monitoring"
CONFIG_DIR = ROOT / "monitoring"
ALERTMANAGER_PORT = int(os.environ.get("ALERTMANAGER_PORT", "9193"))
PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_PORT", "9090"))


def _binary(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


TOOLS = {
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "prometheus": ("prometheus",),
}


def pid_file(name: str) -> Path:
    return RUN_DIR / f"{name}.pid"


def running_pid(name: str) -> int | None:
    """The pid in ``.run/<name>.pid`` if that process is alive and is still that tool (pids get reused)."""
    try:
        pid = int(pid_file(name).read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except (FileNotFoundError, ValueError, ProcessLookupError, IndexError):
        return None
    return pid if any(command.endswith(tool.encode()) for tool in TOOLS[name]) else None


def alertmanager_url() -> str:
    return f"http://127.0.0.1:{ALERTMANAGER_PORT}"


def running_alertmanager_url() -> str | None:
    """This project's Alertmanager's URL while ``make monitoring-up`` has it running, else None."""
    return alertmanager_url() if running_pid("alertmanager") else None


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(name: str, args: list[str], url: str) -> None:
    binary = _binary(*TOOLS[name])
    if binary is None:
        sys.exit(f"error: {name} is not installed: run `make monitoring-tools` (Debian package {TOOLS[name][0]})")
    if running_pid(name):
        print(f"{name} already runs: {url}")
        return
    if ready(url):
        sys.exit(f"error: something else answers on {url}: stop it, or set {name.upper()}_PORT")
    (DATA_DIR / name).mkdir(parents=True, exist_ok=True)
    log = (RUN_DIR / f"{name}.log").open("ab")
    process = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file(name).write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while not ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = (RUN_DIR / f"{name}.log").read_text(errors="replace")[-2000:]
            sys.exit(f"error: {name} did not start (see .run/{name}.log):\n{tail}")
        time.sleep(0.2)
    print(f"{name} started: {url}")


def up() -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    start(
        "alertmanager",
        [
            f"--config.file={CONFIG_DIR / 'alertmanager.yml'}",
            f"--storage.path={DATA_DIR / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
            "--cluster.listen-address=",
        ],
        alertmanager_url(),
    )
    prometheus = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    start(
        "prometheus",
        [
            f"--config.file={CONFIG_DIR / 'prometheus.yml'}",
            f"--storage.tsdb.path={DATA_DIR / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        prometheus,
    )
    print(
        f"\n  Alertmanager  {alertmanager_url()}   (Debian's has no web UI: "
        f"amtool --alertmanager.url={alertmanager_url()} alert query)\n"
        f"  Prometheus    {prometheus}/alerts   (rules; targets: {prometheus}/targets)\n"
        f"\nThe processor sends incidents here when it runs with ALERTMANAGER_URL={alertmanager_url()};\n"
        "`make up` sets it while this Alertmanager runs (a processor already running: `make down && make up`)."
    )


def down() -> None:
    for name in ("prometheus", "alertmanager"):
        pid = running_pid(name)
        if pid is None:
            print(f"{name} is not running")
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while running_pid(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if running_pid(name):
            os.kill(pid, signal.SIGKILL)
        pid_file(name).unlink(missing_ok=True)
        print(f"{name} stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("up", "down"))
    {"up": up, "down": down}[parser.parse_args().command]()


if __name__ == "__main__":
    main()
