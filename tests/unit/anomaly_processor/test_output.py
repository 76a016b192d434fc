"""What the processor prints in each PRINT_MODE."""

import io

import pytest
from anomaly_processor.ml_client import Score
from anomaly_processor.output import ANOMALY_MARK, DEAD_LETTER_MARK, Printer, event_line

from eventbus import LogEvent
from streaming_detector.profiles import generate_normal_events
from tests.unit.anomaly_processor.consumed import Record

NORMAL = Score(False, 0.41, "v1")
ANOMALOUS = Score(True, 0.93, "v1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def printer(mode: str, *, color: bool = False) -> tuple[Printer, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return Printer(mode, summary_interval_s=5.0, auto_rate=50.0, stream=out, color=color, clock=clock), out, clock  # type: ignore[arg-type]


def verdicts(count: int, anomalous: set[int] = frozenset()) -> list[tuple[LogEvent, Score]]:  # type: ignore[assignment]
    return [(e, ANOMALOUS if i in anomalous else NORMAL) for i, e in enumerate(generate_normal_events(count, seed=4))]


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_a_line_per_event_like_the_original_with_anomalies_marked() -> None:
    p, out, _ = printer("events")
    batch = verdicts(3, anomalous={1})
    p.batch(3, batch, [])

    printed = lines(out)
    assert len(printed) == 3
    event = batch[0][0]
    assert printed[0].startswith(f'Log: {{"timestamp":"{event.timestamp}","service":"{event.service}"')
    assert printed[0].endswith("Anomaly: False (score 0.41, model v1)")
    assert printed[1].startswith(f"{ANOMALY_MARK} Log: ") and "Anomaly: True (score 0.93" in printed[1]
    assert "\x1b[" not in out.getvalue()  # not a terminal: no colour codes


def test_anomalies_are_red_on_a_terminal() -> None:
    p, out, _ = printer("events", color=True)
    p.batch(2, verdicts(2, anomalous={0}), [])
    first, second = lines(out)
    assert first.startswith("\x1b[1;31m" + ANOMALY_MARK) and first.endswith("\x1b[0m")
    assert "\x1b[" not in second


def test_dead_letters_are_printed_with_where_and_why() -> None:
    p, out, _ = printer("events")
    p.batch(2, [], [(Record("logs", 1, 42, 0, None, b'{"latency_ms": -1}'), "latency_ms: Input should be >= 0")])
    assert lines(out) == [
        f'{DEAD_LETTER_MARK} logs[1]@42: latency_ms: Input should be >= 0 | value: {{"latency_ms": -1}}'
    ]


def test_control_characters_from_messages_cannot_reach_the_terminal() -> None:
    event = generate_normal_events(1)[0].model_copy(update={"service": "evil\x1b[2J"})
    assert "\x1b" not in event_line(event, NORMAL)
    p, out, _ = printer("events")
    p.batch(1, [], [(Record("logs", 0, 1, 0, None, b"\x1b]0;pwned\x07"), "not JSON: \x1b[31m")])
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def test_auto_prints_events_at_a_low_rate() -> None:
    p, out, clock = printer("auto")
    for _ in range(5):
        p.batch(2, verdicts(2), [])
        clock.now += 1.0
    assert len(lines(out)) == 10
    assert not any(line.startswith("[summary]") for line in lines(out))


def test_auto_switches_to_a_periodic_summary_at_a_high_rate() -> None:
    p, out, clock = printer("auto")
    for _ in range(12):  # 12 batches of 200 events, 0.5 s apart: 400 events/s
        p.batch(200, verdicts(200, anomalous={7}), [])
        clock.now += 0.5
    printed = lines(out)
    assert printed[0].startswith("High rate (~200 events/s)")
    assert not any(line.startswith("Log:") for line in printed)
    summaries = [line for line in printed if line.startswith("[summary]")]
    assert summaries == [
        "[summary] consumed=2200 (+2200 in 5.0s, 440/s) verdicts=2200 anomalies=11 dead_lettered=0 retries=0"
    ]


def test_auto_goes_back_to_lines_when_the_rate_drops() -> None:
    p, out, clock = printer("auto")
    p.batch(500, verdicts(500), [])
    clock.now += 2.0
    p.batch(1, verdicts(1), [])
    assert lines(out)[-1].startswith("Log: ")


def test_summary_mode_prints_only_summaries_and_only_when_something_happened() -> None:
    p, out, clock = printer("summary")
    p.batch(3, verdicts(3, anomalous={0}), [])
    clock.now += 5.0
    p.tick()
    clock.now += 5.0
    p.tick()  # idle interval: no line
    p.retry("ML service unavailable at http://ml, retrying in 2.0s")
    assert lines(out) == [
        "[summary] consumed=3 (+3 in 5.0s, 1/s) verdicts=3 anomalies=1 dead_lettered=0 retries=0",
        "ML service unavailable at http://ml, retrying in 2.0s",
    ]
    assert p.retries == 1


def test_quiet_prints_nothing_but_still_counts() -> None:
    p, out, clock = printer("quiet")
    p.batch(4, verdicts(3, anomalous={2}), [(Record("logs", 0, 1, 0, None, b"x"), "not JSON")])
    clock.now += 10
    p.tick()
    p.retry("ML service unavailable")
    p.close()
    assert out.getvalue() == ""
    assert (p.consumed, p.verdicts, p.anomalies, p.dead_lettered, p.retries) == (4, 3, 1, 1, 1)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), ({"FORCE_COLOR": "1"}, True), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False)],
)
def test_colour_follows_the_terminal_unless_forced_or_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    for name in ("FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()  # not a terminal
    assert Printer("events", summary_interval_s=5.0, auto_rate=50.0, stream=out).color is expected
