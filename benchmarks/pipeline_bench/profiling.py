"""``--profile``: py-spy samples the processor and the ML service during the end-to-end run.

py-spy (``pip install py-spy``, a dev tool, not a dependency) samples every thread of a running
process from outside, so kafka-python's I/O threads are seen too. Only samples of the thread holding
the GIL are kept (``--gil``): a Python process runs one such thread at a time, so their share is
where its CPU goes, and their count against the wall-clock samples is how busy the GIL was.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 200


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Sampler:
    """One py-spy attached to ``pid``, stopped with SIGINT (which makes it write its file)."""

    process: subprocess.Popen[bytes]
    output: Path
    started: float
    seconds: float = 0.0

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def attach(pid: int, output: Path) -> Sampler:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    # --subprocesses: the processor forks its workers, and they do the work (the parent only supervises).
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--gil", "--format", "raw", "--rate", str(RATE_HZ)]
    argv += ["--output", str(output)]
    log = open(output.with_suffix(".log"), "wb")  # noqa: SIM115 - lives as long as the sampler
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    return Sampler(process, output, time.monotonic())


@contextlib.contextmanager
def sampled(folder: Path | None, targets: dict[str, int]) -> Iterator[dict[str, float]]:
    """Sample each ``name: pid`` into ``folder/name.txt`` meanwhile (nothing if no folder); yields seconds per name."""
    seconds: dict[str, float] = {}
    samplers = [attach(pid, folder / f"{name}.txt") for name, pid in targets.items()] if folder else []
    try:
        yield seconds
    finally:
        for sampler in samplers:
            sampler.stop()
            seconds[sampler.output.stem] = sampler.seconds


def summarise(raw: Path, top: int = 15, seconds: float = 0.0) -> dict[str, list[tuple[str, float]]]:
    """Top functions by self and inclusive time, as % of the samples, from py-spy's collapsed stacks.

    ``seconds`` sampled at ``RATE_HZ``: the GIL's busy share is the samples kept over the samples taken.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # With --subprocesses each stack starts with its process ('process 123:"python main.py"'): dropped, so a
        # function's share is summed over the workers.
        frames = [_short(frame) for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return {"self": [], "inclusive": []}
    return {
        "samples": [("total", float(total))]
        + ([("gil_busy_percent", 100.0 * total / (seconds * RATE_HZ))] if seconds > 0 else []),
        "self": [(name, 100.0 * n / total) for name, n in own.most_common(top)],
        # Frames on most stacks are main loops (and the fork into a worker): they say nothing.
        "inclusive": [(name, 100.0 * n / total) for name, n in inclusive.most_common() if n < 0.8 * total][:top],
    }


def _short(frame: str) -> str:
    """``send (kafka/producer/kafka.py:123)`` -> ``send (kafka/producer/kafka.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "benchmarks/", "processor/", "fastapi-ml-service/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def render(title: str, summary: dict[str, list[tuple[str, float]]]) -> str:
    busy = dict(summary.get("samples", [])).get("gil_busy_percent")
    lines = [f"{title}:" if busy is None else f"{title}: GIL held {busy:.0f}% of the time (summed over its processes)"]
    lines.append(f"{title}: self time (% of GIL-holding samples)")
    lines += [f"  {share:5.1f}%  {name}" for name, share in summary.get("self", [])]
    lines.append(f"{title}: inclusive time")
    lines += [f"  {share:5.1f}%  {name}" for name, share in summary.get("inclusive", [])]
    return "\n".join(lines)
