"""Replaying a NAB CSV: rows become events in time order, bad rows are reported and skipped, windows label rows."""

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from log_simulator.errors import ReplayFileError
from log_simulator.replay import NAB_WINDOW, load_replay, read_nab_csv

from eventbus import parse_event

NAB_CSV = """timestamp,value
2014-04-01 00:10:00,30.5
2014-04-01 00:00:00,10.0
2014-04-01 00:05:00,20.25
not a time,40
2014-04-01 00:15:00,abc
2014-04-01 00:15:00,nan
2014-04-01 00:20:00,50,extra
2014-04-01 00:05:00,21.0

2014-04-01 00:25:00,0
"""


def write(tmp_path: Path, text: str, name: str = "machine_temp.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_are_replayed_in_time_order_as_events(tmp_path: Path) -> None:
    series = read_nab_csv(write(tmp_path, NAB_CSV))
    events = list(series.events())
    assert [e.latency_ms for e in events] == [10.0, 20.25, 21.0, 30.5, 0.0]  # equal times keep file order
    assert [e.timestamp for e in events] == [
        "2014-04-01T00:00:00+00:00",
        "2014-04-01T00:05:00+00:00",
        "2014-04-01T00:05:00+00:00",
        "2014-04-01T00:10:00+00:00",
        "2014-04-01T00:25:00+00:00",
    ]
    assert {e.service for e in events} == {"machine_temp"}
    assert {e.error_rate for e in events} == {0.0}
    assert {e.label for e in events} == {"normal"}
    assert len({e.event_id for e in events}) == 5
    assert all(parse_event(e.to_json()) == e for e in events)
    assert series.offsets_s() == [0.0, 300.0, 300.0, 600.0, 1500.0]


def test_bad_rows_are_reported_with_their_line_number_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="log_simulator.replay"):
        series = read_nab_csv(write(tmp_path, NAB_CSV))
    assert [(bad.line, bad.reason.split(" ")[0]) for bad in series.bad_rows] == [
        (5, "unreadable"),
        (6, "value"),
        (7, "value"),
        (8, "3"),
    ]
    for line in (5, 6, 7, 8):
        assert f"line {line} skipped" in caplog.text


def test_seeded_replay_ids_are_reproducible(tmp_path: Path) -> None:
    path = write(tmp_path, NAB_CSV)
    first = [e.event_id for e in read_nab_csv(path).events(seed=3)]
    assert first == [e.event_id for e in read_nab_csv(path).events(seed=3)]
    assert first != [e.event_id for e in read_nab_csv(path).events(seed=4)]


def test_a_negative_value_refuses_the_file_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,-3.5\n")
    with pytest.raises(ReplayFileError, match=r"line 3: value -3.5 is negative"):
        read_nab_csv(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,level\n2014-04-01 00:00:00,1\n", "header with 'timestamp' and 'value'"),
        ("", "header with 'timestamp' and 'value'"),
        ("timestamp,value\nnope,1\n", "no usable rows"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ReplayFileError, match=message):
        read_nab_csv(write(tmp_path, text))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayFileError, match="cannot open replay file"):
        read_nab_csv(tmp_path / "absent.csv")


def test_nab_windows_label_the_rows_inside_them(tmp_path: Path) -> None:
    csv_path = write(tmp_path, NAB_CSV)
    labels = tmp_path / "combined_windows.json"
    labels.write_text(
        json.dumps(
            {
                "realKnownCause/machine_temp.csv": [["2014-04-01 00:05:00.000000", "2014-04-01 00:10:00.000000"]],
                "realKnownCause/other.csv": [["2014-04-01 00:00:00.000000", "2014-04-01 00:30:00.000000"]],
            }
        )
    )
    series = load_replay(csv_path, labels)
    assert series.windows == [(datetime(2014, 4, 1, 0, 5, tzinfo=UTC), datetime(2014, 4, 1, 0, 10, tzinfo=UTC))]
    assert [e.label for e in series.events()] == ["normal", NAB_WINDOW, NAB_WINDOW, NAB_WINDOW, "normal"]


def test_labels_file_without_this_series_is_refused(tmp_path: Path) -> None:
    labels = tmp_path / "combined_windows.json"
    labels.write_text(json.dumps({"realKnownCause/other.csv": []}))
    with pytest.raises(ReplayFileError, match="no windows listed for machine_temp.csv"):
        load_replay(write(tmp_path, NAB_CSV), labels)
    labels.write_text("{not json")
    with pytest.raises(ReplayFileError, match="not JSON"):
        load_replay(write(tmp_path, NAB_CSV), labels)


def test_a_file_with_epoch_times_replays_like_one_with_iso_times(tmp_path: Path) -> None:
    iso = tmp_path / "iso.csv"
    iso.write_text("timestamp,value\n2026-01-01 00:00:00,10\n2026-01-01 00:05:00,12\n")
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("timestamp,value\n1767225600,10\n1767225900.0,12\n")
    millis = tmp_path / "millis.csv"
    millis.write_text("timestamp,value\n1767225600000,10\n1767225900000,12\n")
    expected = [row.timestamp for row in read_nab_csv(iso).rows]
    assert [row.timestamp for row in read_nab_csv(seconds).rows] == expected
    assert [row.timestamp for row in read_nab_csv(millis).rows] == expected
