"""``PROCESSOR_WORKERS=N``: N processor processes in the one consumer group, supervised by this one.

One kafka-python process tops out near 20,000 records/s consumed and produced with no work at all, so more
throughput needs more members of the group: Kafka splits the partitions of ``LOGS_TOPIC`` between them,
exactly as between processors started by hand (more workers than partitions leaves some idle, as standbys;
a split that is not even, 2 workers for 3 partitions, leaves one worker with twice the work of the other).
Each worker runs the same program as ``main.py --worker K``, with its own Kafka clients, scorer and per-service
context (a service's events are keyed to one partition, so to one worker). Workers are forked from the
supervisor once it has imported the processor and loaded the compiled context loop, so that each starts
consuming at once instead of spending ~1.3 s loading both again (three workers sharing two cores took ~2 s).

The supervisor:

- forwards SIGINT and SIGTERM to the workers: each finishes its batch in hand, commits, and exits 0; a second
  signal stops them at once (130), as for one processor. The workers run in their own session, so a Ctrl-C on
  the terminal reaches them once, through the supervisor, not twice.
- restarts nothing: a worker that exits on its own (a crash, a refused API key) makes it stop the others and
  exit with that worker's code (1 if it had none), so a supervisor above it (systemd, Kubernetes) sees the failure.
- serves ``/metrics`` (the workers' metrics summed) and ``/health`` (200 while every worker is healthy) on
  ``PROCESSOR_METRICS_HOST:PORT``; the workers serve theirs on free loopback ports.

A worker whose supervisor disappears (SIGKILL) notices within a second and stops as on SIGTERM.
"""

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from types import FrameType

from anomaly_processor.metrics import MetricsServer, merge_metrics
from anomaly_processor.settings import ProcessorSettings

log = logging.getLogger("anomaly_processor.workers")

WORKER_FLAG = "--worker"
LOOPBACK = "127.0.0.1"
SUPERVISE_TICK_S = 0.2
SCRAPE_TIMEOUT_S = 2.0
ORPHAN_CHECK_S = 1.0


@dataclass
class Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    metrics_port: int  # 0: none

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        """None while running; else the worker's exit status, or minus the signal that ended it."""
        return self.process.exitcode

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}{path}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def start_worker(index: int, with_metrics: bool) -> Worker:
    """Fork worker ``index``: it inherits what this process has loaded (modules, compiled code), not its threads."""
    port = free_port() if with_metrics else 0
    process = multiprocessing.get_context("fork").Process(
        target=_worker_main, args=(index, port), name=f"processor-worker-{index}"
    )
    process.start()
    return Worker(index, process, port)


def _worker_main(index: int, metrics_port: int) -> None:
    os.setsid()  # terminal signals reach the supervisor only; it forwards them once
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)  # the supervisor's forwarding handlers are not the worker's
    os.environ.update(PROCESSOR_WORKERS="1", PROCESSOR_METRICS_HOST=LOOPBACK, PROCESSOR_METRICS_PORT=str(metrics_port))
    from anomaly_processor.app import main  # imported by the supervisor already: no cost

    sys.exit(main([WORKER_FLAG, str(index)]))


class Supervisor:
    """Starts ``count`` workers, forwards stop signals, and stops them all when one exits on its own."""

    def __init__(self, settings: ProcessorSettings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.workers: list[Worker] = []
        self._signals = 0

    def run(self) -> int:
        with_metrics = bool(self.settings.processor_metrics_port)
        if self.settings.context:
            from streaming_detector import load_compiled_tracker

            load_compiled_tracker()
        sys.stdout.flush()  # what is buffered here would be printed again by every worker
        self._install_signal_handlers()
        for index in range(self.count):
            self.workers.append(start_worker(index, with_metrics))
        print(f"Started {self.count} processor workers (pids {', '.join(str(w.pid) for w in self.workers)})")
        sys.stdout.flush()
        server = self._serve_metrics() if with_metrics else None
        try:
            return self._supervise()
        finally:
            if server is not None:
                server.close()

    def _supervise(self) -> int:
        failure: int | None = None
        while True:
            running = [w for w in self.workers if w.exit_code is None]
            if not running:
                break
            if failure is None and not self._signals:
                ended = [w for w in self.workers if w.exit_code is not None]
                if ended:
                    worker = ended[0]
                    code = worker.exit_code
                    assert code is not None
                    failure = code if code > 0 else 1
                    log.error(
                        "worker %d (pid %d) exited with %s: stopping the other workers", worker.index, worker.pid, code
                    )
                    print(f"Worker {worker.index} exited with {code}: stopping the others (exit {failure}).")
                    sys.stdout.flush()
                    self._signal_workers(signal.SIGTERM)
            time.sleep(SUPERVISE_TICK_S)
        if failure is not None:
            return failure
        codes = [w.exit_code or 0 for w in self.workers]
        if self._signals > 1:
            return 130
        return next((code if code > 0 else 1 for code in codes if code != 0), 0)

    def _signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, frame: FrameType | None) -> None:
            # First signal: every worker finishes its batch; second: every worker stops at once.
            self._signals += 1
            self._signal_workers(signal.SIGTERM)

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def _serve_metrics(self) -> MetricsServer | None:
        host, port = self.settings.processor_metrics_host, self.settings.processor_metrics_port
        try:
            server = MetricsServer(None, host, port, scrape=self.scrape, health=self.healthy, ready=self.ready)
        except OSError as exc:
            log.warning("cannot serve metrics on %s:%d (%s): running without them", host, port, exc.strerror or exc)
            return None
        print(f"Metrics of the {self.count} workers on http://{host}:{port}/metrics, health on /health")
        sys.stdout.flush()
        return server

    def scrape(self) -> str:
        texts = []
        for worker in self.workers:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(worker.url("/metrics"), timeout=SCRAPE_TIMEOUT_S) as answer,
            ):
                texts.append(answer.read().decode())
        return merge_metrics(texts)

    def healthy(self) -> bool:
        return self._all_answer("/health")

    def ready(self) -> bool:
        return self._all_answer("/ready")

    def _all_answer(self, path: str) -> bool:
        for worker in self.workers:
            try:
                with urllib.request.urlopen(worker.url(path), timeout=SCRAPE_TIMEOUT_S) as answer:
                    if answer.status != 200:
                        return False
            except OSError:  # refused, timed out, or an HTTP error status (urllib's HTTPError is an OSError)
                return False
        return True


def watch_parent(stop: threading.Event) -> None:
    """In a worker: set ``stop`` if the supervisor goes away (the worker is then adopted by another process)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(ORPHAN_CHECK_S):
            if os.getppid() != parent:
                log.warning("the supervisor (pid %d) is gone: stopping after the batch in hand", parent)
                stop.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
