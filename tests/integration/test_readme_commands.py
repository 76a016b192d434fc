"""The READMEs' commands work as written, run from the repository's root after ``make up``.

Every command in a ```bash block of the README and the service READMEs is extracted. Each one is either run
(and must exit 0, and print what its ``# {...}`` comment shows, up to the first ``…``) or named in
``NOT_RUN`` with the reason, so a command added to a README without being tried fails this test.

The stack is the user's: ``make up FOLLOW=0`` starts a real local Kafka, trains the model and starts the
three services; ``make down`` stops them at the end. To leave a developer's own stack alone it gets free
ports and its own folders through the environment (``ML_PORT``, ``PROCESSOR_METRICS_PORT``, ``KAFKA_LOCAL_*``,
``STACK_RUN_DIR``, ``MODEL_PATH``), and the commands get the same substitutions: ``localhost:8000`` becomes
the ML service's port and ``.run/`` the run folder. ``IDLE_S=2`` shortens ``make consume``'s idle wait.
"""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import stack_environment

# alone: `make test` runs it after the parallel tests (it runs `make up` on ports of its own, and times `make logs`).
pytestmark = [pytest.mark.integration, pytest.mark.alone]

REPO = Path(__file__).resolve().parents[2]
# The simulator's first: `save_model.py --from-topic` (ML service README) needs 1,000 normal events in `logs`.
READMES = ["log-simulator/README.md", "README.md", "processor/README.md", "fastapi-ml-service/README.md"]

NOT_RUN = {
    "make up": "run first, as `make up FOLLOW=0` (FOLLOW=1 follows the processor until Ctrl-C)",
    "make test": "this test is part of it",
    "make down": "run last, when every other command has run",
    ".venv/bin/python log-simulator/main.py": "sends until Ctrl-C; `make up` runs it in the background",
    ".venv/bin/python log-simulator/main.py --rate 2000 --duration 60 --anomalies spike,error_burst": "takes 60 s",
    ".venv/bin/python log-simulator/main.py --services auth,payment:350,search:40 --anomaly-rate 0.005": (
        "sends until Ctrl-C"
    ),
    ".venv/bin/python log-simulator/main.py --replay nyc_taxi.csv --labels combined_windows.json --speed 300": (
        "needs the NAB corpus (tests/unit/test_nab_scorer.py replays a small one)"
    ),
    ".venv/bin/python processor/main.py": "runs until Ctrl-C; `make up` runs it in the background",
    "CONTEXT=0 .venv/bin/python processor/main.py": "runs until Ctrl-C",
    "PROCESSOR_WORKERS=1 .venv/bin/python processor/main.py": "runs until Ctrl-C",
    ".venv/bin/python fastapi-ml-service/main.py": "serves until Ctrl-C; `make up` runs it in the background",
    "cd fastapi-ml-service && ../.venv/bin/uvicorn main:app --port 8000": "serves until Ctrl-C",
    'make simulate ARGS="--rate 50 --anomalies level_shift --anomaly-rate 0.002"': (
        "sends until Ctrl-C; tests/integration/test_alerting.py injects a level shift and checks its one alert"
    ),
}
# Commands that follow output until Ctrl-C: run until a line matches, then interrupted like a user would.
FOLLOWED = {"make logs": re.compile(r"Anomaly: (True|False) \((score|severity) ")}


@dataclass
class Command:
    source: str
    text: str
    expected: list[str] = field(default_factory=list)


def readme_commands(path: Path) -> list[Command]:
    """The commands of the ```bash blocks, continuation lines joined, each with its ``# {…}`` comments."""
    commands: list[Command] = []
    in_block = False
    pending = ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        if not in_block:
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = stripped.lstrip("# ")
            if commands and comment[:1] in "{[":
                commands[-1].expected.append(re.split(r"\s{2,}", comment)[0])
            continue
        text = re.split(r"\s{2,}#", line)[0].rstrip()
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        text = (pending + text.strip()).strip()
        pending = ""
        if text:
            commands.append(Command(str(path.relative_to(REPO)), text))
    return commands


def all_commands() -> list[Command]:
    return [command for readme in READMES for command in readme_commands(REPO / readme)]


def test_every_readme_command_is_run_or_has_a_reason_not_to_be() -> None:
    commands = [c.text for c in all_commands()]
    assert len(commands) >= 25
    assert set(NOT_RUN) <= set(commands), f"NOT_RUN names commands no README has: {set(NOT_RUN) - set(commands)}"
    # The ones that are run include each kind the READMEs show.
    run = [c for c in commands if c not in NOT_RUN]
    for kind in ("curl ", "make consume", "make status", "make logs", "make train", ".venv/bin/python"):
        assert any(c.startswith(kind) for c in run), kind


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``make up FOLLOW=0`` on free ports and in folders of its own; ``make down`` must stop it all."""
    home = tmp_path_factory.mktemp("stack")
    env = {**stack_environment(home), "IDLE_S": "2"}
    for name in ("ML_API_KEY", "ML_SERVICE_URL", "ML_SCORING_API_KEY", "LOGS_TOPIC", "PREDICTIONS_TOPIC"):
        env.pop(name, None)
    up = subprocess.run(["make", "up", "FOLLOW=0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "All services are up." in up.stdout
        yield env
    finally:
        # The README's `make monitoring-down` (named in its text) stops what `make monitoring-up` started.
        monitoring = subprocess.run(
            ["make", "monitoring-down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        down = subprocess.run(["make", "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert monitoring.returncode == 0, monitoring.stdout + monitoring.stderr
        assert down.returncode == 0, down.stdout + down.stderr
        assert "Kafka (local KRaft) stopped" in down.stdout
        for pid_file in (home / "run").glob("*.pid"):
            pytest.fail(f"{pid_file.name} left behind by make down")


def as_run_here(command: str, env: dict[str, str]) -> str:
    return command.replace("localhost:8000", f"127.0.0.1:{env['ML_PORT']}").replace(".run/", env["STACK_RUN_DIR"] + "/")


def _ctrl_c_stops() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_followed(command: str, env: dict[str, str], until: re.Pattern[str]) -> tuple[int, str]:
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # As at a terminal: a shell's background job (`make test &`) ignores SIGINT, and its children inherit that.
        preexec_fn=_ctrl_c_stops,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    for line in process.stdout:
        lines.append(line)
        if until.search(line) or time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        # What each process of the command was doing, for the failure report; then end them.
        ps = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,wchan:24,args", "-g", str(process.pid)], capture_output=True, text=True
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{command!r} still ran 20 s after Ctrl-C:\n{ps.stdout}")
    found = any(until.search(line) for line in lines)
    return (0 if found else 1), "".join(lines)


def test_readme_commands_work_as_written(stack: dict[str, str]) -> None:
    failures = []
    ran = 0
    for command in all_commands():
        if command.text in NOT_RUN:
            continue
        text = as_run_here(command.text, stack)
        started = time.monotonic()
        if command.text in FOLLOWED:
            code, output = run_followed(text, stack, FOLLOWED[command.text])
            stdout = output
        else:
            result = subprocess.run(
                ["bash", "-c", text], cwd=REPO, env=stack, capture_output=True, text=True, timeout=180
            )
            code, stdout, output = result.returncode, result.stdout, result.stdout + result.stderr
        ran += 1
        problem = f"exit code {code}" if code != 0 else ""
        for expected in command.expected:
            prefix = expected.split("…")[0]
            if not stdout.startswith(prefix):
                problem = f"printed {stdout[:200]!r}, the README shows {expected!r}"
        if "Traceback" in output or re.search(r"^ERROR|\] ERROR ", output, re.MULTILINE):
            problem = problem or "printed an error"
        if problem:
            failures.append(
                f"{command.source}: `{command.text}`: {problem} ({time.monotonic() - started:.0f}s)\n" + output[-1500:]
            )
    assert ran >= 15
    assert not failures, "\n\n".join(failures)
