"""What the benchmark starts and must stop: its own broker, the two ML services, processors; RSS of each."""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local_kafka import LocalBroker, LocalBrokerConfig

from devstack.processes import LOOPBACK, Child, free_port, http_status, wait_until
from eventbus import KafkaSettings, ensure_topics, make_consumer

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "benchmarks"
ORIGINAL_DIR = BENCH_DIR / "original_design"
SERVICE_MAIN = REPO_ROOT / "fastapi-ml-service" / "main.py"
SAVE_MODEL = REPO_ROOT / "fastapi-ml-service" / "save_model.py"
PROCESSOR_MAIN = REPO_ROOT / "processor" / "main.py"


class StepFailed(RuntimeError):
    """A process the benchmark needs did not start or did not finish its work."""


@dataclass
class Stack:
    """Everything started by this run; ``close`` stops it all, in reverse order, by pid."""

    workdir: Path
    children: list[Child] = field(default_factory=list)
    broker: LocalBroker | None = None

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path = REPO_ROOT, pipe_stdout: bool = False
    ) -> Child:
        # A new session: Ctrl-C reaches the benchmark only; it stops its children itself.
        log_path = self.workdir / f"{name}.log"
        child = Child(name, list(argv), env=env, cwd=cwd, log_path=log_path, new_session=True, pipe_stdout=pipe_stdout)
        child.start()
        self.children.append(child)
        return child

    def stop(self, managed: Child) -> None:
        managed.stop()
        if managed in self.children:
            self.children.remove(managed)

    def close(self) -> None:
        for managed in reversed(self.children):
            managed.stop()
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that every ``finally`` stops what it started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_broker(stack: Stack) -> str:
    """A fresh local KRaft broker on free ports, its files under the run's temp folder."""
    config = LocalBrokerConfig(
        host=LOOPBACK, port=free_port(), controller_port=free_port(), home=stack.workdir / "kafka"
    )
    broker = LocalBroker(config)
    stack.broker = broker
    broker.start()
    return config.bootstrap


def warm_up_group_coordinator(bootstrap: str) -> None:
    """A fresh broker creates ``__consumer_offsets`` when the first group joins (10-20 s here): do it now, untimed."""
    settings = fresh_settings(bootstrap, "warmup", partitions=1)
    consumer = make_consumer(settings, settings.logs_topic, group_id=f"bench-warmup-{uuid.uuid4().hex[:8]}")
    try:
        deadline = time.monotonic() + 120
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=200)
        if not consumer.assignment():
            raise StepFailed("the broker did not give a consumer group its partitions within 120 s")
    finally:
        consumer.close()


def fresh_settings(bootstrap: str, label: str, partitions: int = 3) -> KafkaSettings:
    """Unique topics for one measurement, created now."""
    suffix = f"{label}-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(
        kafka_bootstrap_servers=bootstrap,
        logs_topic=f"bench-logs-{suffix}",
        predictions_topic=f"bench-predictions-{suffix}",
        dlq_topic=f"bench-dlq-{suffix}",
        repartition_topic=f"bench-by-service-{suffix}",
        state_topic=f"bench-state-{suffix}",
        logs_partitions=partitions,
    )
    ensure_topics(settings)
    return settings


def train_models(workdir: Path) -> tuple[Path, Path]:
    """The project's model (save_model.py) and the original design's (its train.py), in the temp folder."""
    project_model = workdir / "model.joblib"
    original_model = workdir / "original.joblib"
    subprocess.run(
        [sys.executable, str(SAVE_MODEL), "--output", str(project_model)],
        cwd=REPO_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([sys.executable, str(ORIGINAL_DIR / "train.py"), str(original_model)], cwd=ORIGINAL_DIR, check=True)
    return project_model, original_model


def start_project_service(stack: Stack, model: Path, workers: int) -> str:
    port = free_port()
    env = {
        **os.environ,
        "ML_HOST": LOOPBACK,
        "ML_PORT": str(port),
        "MODEL_PATH": str(model),
        "ML_WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",  # no access log line per request, as for the original below
    }
    service = stack.start("ml-service", [sys.executable, str(SERVICE_MAIN)], env)
    url = f"http://{LOOPBACK}:{port}"
    wait_http(service, f"{url}/ready", None)
    return url


def start_original_service(stack: Stack, model: Path) -> str:
    port = free_port()
    env = {**os.environ, "ORIGINAL_MODEL_PATH": str(model)}
    argv = [sys.executable, "-m", "uvicorn", "service:app", "--host", LOOPBACK, "--port", str(port)]
    service = stack.start("original-service", [*argv, "--log-level", "warning"], env, cwd=ORIGINAL_DIR)
    url = f"http://{LOOPBACK}:{port}"
    wait_http(service, f"{url}/predict", b'{"latency_ms": 200.0, "error_rate": 0.01}')
    return url


def wait_http(managed: Child, url: str, body: bytes | None, timeout_s: float = 60.0) -> None:
    """Until ``url`` answers 200 (GET, or POST of ``body``); fail early if the process died."""
    outcome = wait_until(lambda: http_status(url, body=body) == 200, managed.alive, timeout_s)
    if outcome == "exited":
        raise StepFailed(f"{managed.name} exited with {managed.returncode}:\n{managed.log_tail()}")
    if outcome == "timeout":
        raise StepFailed(f"{managed.name} did not answer {url} within {timeout_s:.0f}s:\n{managed.log_tail()}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn workers are children of the service's process)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    found.extend(int(child) for child in children.read().split())
    return found


def _proc_mib(pid: int, name: str, fields: tuple[str, ...]) -> list[float]:
    """Each of ``fields`` (kB lines of ``/proc/<pid>/<name>``) in MiB, summed over ``pid`` and its descendants."""
    totals = [0.0] * len(fields)
    for member in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/{name}") as lines:
            for line in lines:
                key = line.split(":", 1)[0]
                if key in fields:
                    totals[fields.index(key)] += int(line.split()[1]) / 1024
    return totals


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB of ``pid`` and its descendants, summed; (0, 0) once gone."""
    rss, hwm = _proc_mib(pid, "status", ("VmRSS", "VmHWM"))
    return rss, hwm


def pss_mib(pid: int) -> float:
    """Proportional set size in MiB of ``pid`` and its descendants, summed: a page shared by k processes (a
    library such as numba's LLVM, mapped by every worker) counts 1/k in each, so the sum is what they use."""
    return _proc_mib(pid, "smaps_rollup", ("Pss",))[0]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants; 0 once gone."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{member}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")
