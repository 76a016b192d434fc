"""The simulator's command line without a broker: settings, refused flag combinations, Kafka down at start."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from log_simulator.cli import load_settings, main

from tests.conftest import free_port

SIMULATOR_DIR = Path(__file__).resolve().parents[3] / "log-simulator"


def test_environment_sets_defaults_and_flags_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMULATOR_RATE", "250")
    monkeypatch.setenv("SIMULATOR_COUNT", "40")
    monkeypatch.setenv("SIMULATOR_ANOMALIES", "spike")
    settings, given = load_settings(["--rate", "5", "--original-distributions"])
    assert settings.rate == 5.0
    assert settings.count == 40
    assert settings.anomalies == "spike"
    assert settings.original_distributions is True
    assert given == {"rate", "original_distributions"}


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIMULATOR_"):
            monkeypatch.delenv(name)
    settings, given = load_settings([])
    assert (settings.rate, settings.count, settings.duration, settings.anomaly_rate) == (10.0, None, None, 0.01)
    assert settings.services == "auth,payment,orders" and settings.progress_interval == 2.0 and given == set()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replay", "x.csv", "--rate", "5"], "not used with --replay: --rate"),
        (["--speed", "3"], "only used with --replay FILE.csv: --speed"),
        (["--anomalies", "meteor"], "unknown anomaly kind 'meteor'"),
        (["--rate", "-1"], "rate: Input should be greater than or equal to 0"),
        (["--anomaly-rate", "2"], "anomaly_rate"),
        (["--services", "auth,auth"], "listed twice"),
        (["--replay", "absent.csv"], "cannot open replay file absent.csv"),
    ],
)
def test_bad_settings_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def run_against_nothing(*flags: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}  # nothing listens there
    return subprocess.Popen(
        [sys.executable, "main.py", "--count", "3", *flags],
        cwd=SIMULATOR_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kafka_down_at_start_gives_up_with_a_clear_message() -> None:
    process = run_against_nothing("--connect-timeout", "1")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 3
    assert "did not answer within 1s. Is Kafka running?" in err
    assert "Traceback" not in err
    assert "Sent:" not in out


def test_ctrl_c_while_waiting_for_kafka_exits_cleanly() -> None:
    process = run_against_nothing("--connect-timeout", "0")  # retry forever
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the retry notice
        assert "is not reachable (attempt 1" in first and "retrying in 1s" in first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "stopped before Kafka answered; nothing was sent" in out
    assert "Traceback" not in err
