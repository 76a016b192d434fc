"""Pacing with a fake clock: the asked rate is hit from 10 to 50,000 events/s, in batches at high rates."""

import pytest
from log_simulator.pacing import RatePacer, SchedulePacer


class FakeClock:
    """Time that only moves when the code under test sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


def run_for(pacer: RatePacer | SchedulePacer, clock: FakeClock, seconds: float, limit: int = 2000) -> list[int]:
    """Call the pacer as the sender does until ``seconds`` of fake time passed; the batch sizes released."""
    end = clock.now + seconds
    batches = []
    while clock.now < end:
        batches.append(pacer.wait(limit))
    return batches


@pytest.mark.parametrize("rate", [10, 100, 1000, 10_000, 50_000])
def test_rate_is_hit_over_ten_seconds(rate: int) -> None:
    clock = FakeClock()
    pacer = RatePacer(rate, clock=clock, sleep=clock.sleep)
    released = sum(run_for(pacer, clock, 10.0))
    assert released == pytest.approx(rate * 10, abs=max(2, rate * 0.005 + 1))


def test_low_rate_sends_one_event_per_wake_up() -> None:
    clock = FakeClock()
    pacer = RatePacer(10, clock=clock, sleep=clock.sleep)
    batches = run_for(pacer, clock, 5.0)
    assert set(batches) == {1}
    assert clock.sleeps[1:] == pytest.approx([0.1] * (len(clock.sleeps) - 1))


def test_high_rate_sends_batches_instead_of_sleeping_per_event() -> None:
    clock = FakeClock()
    pacer = RatePacer(50_000, clock=clock, sleep=clock.sleep)
    released = sum(run_for(pacer, clock, 2.0))
    assert released >= 99_000
    assert len(clock.sleeps) <= 2.0 / 0.005 + 2  # one wake-up per 5 ms tick, not 100,000
    assert min(clock.sleeps[1:]) > 0.004


def test_rate_zero_never_sleeps_and_releases_whole_batches() -> None:
    clock = FakeClock()
    pacer = RatePacer(0, clock=clock, sleep=clock.sleep)
    assert [pacer.wait(500) for _ in range(3)] == [500, 500, 500]
    assert clock.sleeps == []


def test_a_stall_is_caught_up_only_up_to_the_allowed_lag() -> None:
    clock = FakeClock()
    pacer = RatePacer(1000, clock=clock, sleep=clock.sleep, max_lag_s=1.0)
    sum(run_for(pacer, clock, 1.0))
    clock.now += 10.0  # e.g. the producer blocked for 10 s
    assert pacer.wait(1_000_000) == 1000  # one second's worth, not ten
    sleeps_before = len(clock.sleeps)
    released = sum(run_for(pacer, clock, 1.0))
    assert released == pytest.approx(1000, abs=6)  # then back to the steady rate
    assert len(clock.sleeps) > sleeps_before


def test_limit_caps_a_release() -> None:
    clock = FakeClock()
    pacer = RatePacer(10_000, clock=clock, sleep=clock.sleep)
    clock.now += 1.0
    assert pacer.wait(7) == 7
    assert pacer.wait(0) == 0


def test_a_woken_sleep_releases_nothing_early() -> None:
    clock = FakeClock()
    pacer = RatePacer(1, clock=clock, sleep=lambda seconds: None)  # a stop request cut the sleep short
    assert pacer.wait(10) == 1  # the first event is due at once
    assert pacer.wait(10) == 0


def test_schedule_plays_offsets_at_speed() -> None:
    clock = FakeClock()
    start = clock.now
    offsets = [0.0, 300.0, 600.0, 600.0, 900.0]  # NAB rows 5 minutes apart, two at the same time
    pacer = SchedulePacer(offsets, speed=300, clock=clock, sleep=clock.sleep)
    released_at: list[float] = []
    while len(released_at) < len(offsets):
        released = pacer.wait(100)
        released_at.extend([clock.now - start] * released)
    assert released_at == pytest.approx([0.0, 1.0, 2.0, 2.0, 3.0])
    assert pacer.wait(100) == 100  # past the schedule nothing is held back: the source ends the replay
    assert clock.now - start == pytest.approx(3.0)


def test_schedule_at_speed_zero_plays_everything_at_once() -> None:
    clock = FakeClock()
    pacer = SchedulePacer([0.0, 300.0, 3600.0], speed=0, clock=clock, sleep=clock.sleep)
    assert pacer.wait(2) == 2
    assert pacer.wait(100) == 1
    assert clock.sleeps == []


def test_schedule_releases_every_overdue_row_after_a_stall() -> None:
    clock = FakeClock()
    pacer = SchedulePacer([float(i) for i in range(10)], speed=1, clock=clock, sleep=clock.sleep)
    assert pacer.wait(100) == 1
    clock.now += 5.5
    assert pacer.wait(100) == 5  # rows due at 1..5 s


def test_pacers_refuse_negative_rates() -> None:
    with pytest.raises(ValueError):
        RatePacer(-1)
    with pytest.raises(ValueError):
        SchedulePacer([0.0], speed=-1)
