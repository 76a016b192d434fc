"""The simulator against the real broker: what it says it sent is what lands in ``logs``, keyed by service."""

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from log_simulator.generator import TrafficGenerator

from eventbus import KafkaSettings, parse_event
from tests.conftest import read_all

SIMULATOR_DIR = Path(__file__).resolve().parents[2] / "log-simulator"


def simulator(*flags: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "main.py", *flags],
        cwd=SIMULATOR_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summary_of(stdout: str) -> tuple[dict[str, int], Counter[str], str]:
    """The figures (sent, delivered, failed), label counts and the whole line of the final summary."""
    line = next(line for line in stdout.splitlines() if line.startswith("Summary: "))
    figures = {name: int(n) for n, name in re.findall(r"(\d+) (sent|delivered|failed)\b", line)}
    figures.update({name: int(n) for name, n in re.findall(r"\b(sent|delivered|failed) (\d+)", line)})
    labels_text = re.search(r"labels: ([^;]*)", line)
    assert labels_text is not None, line
    labels = Counter({name: int(n) for name, n in re.findall(r"(\w+)=(\d+)", labels_text.group(1))})
    return figures, labels, line


def test_500_events_land_in_logs_keyed_by_service(kafka_settings: KafkaSettings, kafka_env, consumer_factory) -> None:
    process = simulator("--count", "500", "--rate", "0", "--seed", "1", env=kafka_env)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    figures, labels, line = summary_of(out)
    assert figures == {"sent": 500, "delivered": 500, "failed": 0}, line

    records = read_all(consumer_factory(kafka_settings.logs_topic), 500)
    events = [parse_event(record.value) for record in records]
    assert len(events) == 500 and len({e.event_id for e in events}) == 500
    assert all(record.key == event.service.encode() for record, event in zip(records, events, strict=True))
    partitions: dict[str, set[int]] = {}
    for record, event in zip(records, events, strict=True):
        partitions.setdefault(event.service, set()).add(record.partition)
    assert set(partitions) == {"auth", "payment", "orders"}
    assert all(len(p) == 1 for p in partitions.values())
    assert Counter(e.label for e in events) == labels
    assert len(labels) > 1  # some anomalies were injected, so the label check means something

    # With --seed the stream is the generator's, event for event (timestamps aside: wall clock).
    expected = {e.event_id: e for e in TrafficGenerator(seed=1).events(500)}
    for event in events:
        twin = expected[event.event_id]
        assert (event.service, event.latency_ms, event.error_rate, event.label) == (
            twin.service,
            twin.latency_ms,
            twin.error_rate,
            twin.label,
        )


def test_sigterm_flushes_and_summarizes_what_was_sent(
    kafka_settings: KafkaSettings, kafka_env, consumer_factory
) -> None:
    process = simulator("--rate", "300", "--progress-interval", "0.5", env=kafka_env)
    try:
        assert process.stdout is not None
        while not process.stdout.readline().startswith("Progress: "):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    figures, labels, line = summary_of(out)
    assert "stopped by: stop request" in line
    assert figures["sent"] > 0 and figures["delivered"] == figures["sent"] and figures["failed"] == 0

    records = read_all(consumer_factory(kafka_settings.logs_topic), figures["sent"])
    assert len(records) == figures["sent"]
    assert Counter(parse_event(r.value).label for r in records) == labels


def test_replay_of_a_nab_file(tmp_path: Path, kafka_settings: KafkaSettings, kafka_env, consumer_factory) -> None:
    rows = [f"2014-04-01 00:{minute:02d}:00,{minute * 1.5}" for minute in range(0, 60, 5)]
    rows[3], rows[7] = rows[7], rows[3]  # out of order in the file
    rows.insert(5, "2014-04-01 00:61:00,7")  # a bad row (line 7)
    csv_path = tmp_path / "cpu_utilization.csv"
    csv_path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    labels_path = tmp_path / "combined_windows.json"
    labels_path.write_text(
        json.dumps({"realAWSCloudwatch/cpu_utilization.csv": [["2014-04-01 00:20:00", "2014-04-01 00:30:00"]]})
    )

    # 5-minute rows at 6000x: 20 rows/s, slow enough for one "Sent:" line per event.
    process = simulator(
        "--replay", str(csv_path), "--labels", str(labels_path), "--speed", "6000", "--seed", "2", env=kafka_env
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "line 7 skipped: unreadable timestamp '2014-04-01 00:61:00'" in err
    figures, labels, line = summary_of(out)
    assert figures == {"sent": 12, "delivered": 12, "failed": 0}, line
    assert "bad rows skipped: 1" in line
    printed = [json.loads(text.removeprefix("Sent: ")) for text in out.splitlines() if text.startswith("Sent: ")]

    records = read_all(consumer_factory(kafka_settings.logs_topic), 12)
    assert len({r.partition for r in records}) == 1  # one service, one partition: offsets follow send order
    events = [parse_event(r.value) for r in sorted(records, key=lambda r: r.offset)]
    assert [e.model_dump() for e in events] == printed
    assert [e.latency_ms for e in events] == [minute * 1.5 for minute in range(0, 60, 5)]
    assert {e.service for e in events} == {"cpu_utilization"}
    assert [e.label for e in events] == ["normal"] * 4 + ["nab_window"] * 3 + ["normal"] * 5
    assert Counter(e.label for e in events) == labels
