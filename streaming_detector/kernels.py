"""The compiled loops of the detector (numba): what runs for every event and every tree.

* ``advance_context``: ``ContextTracker``'s per-event loop over its per-service arrays (the processor's hot loop).
* ``judge_scores``: ``ContextTracker.judge_scores``, each context score's service quiet or not, then learned.
* ``forest_path_lengths``: ``FlatForest``'s walk of every row down every tree (the service's context scoring).

Compiled on first use and cached beside this file (``cache=True``); ``nogil``, so kafka-python's IO threads
run while a batch is scored. numba costs a process ~30 MiB of private memory plus ~130 MiB of LLVM library
pages (shared between processes), so ``tracker`` imports this module only when a tracker is built.
"""

import math

import numba
import numpy as np

from streaming_detector.tracker import N_SIGNALS, NUMBERS, RUN_EVENTS

# The hour-baseline signal measures the mean level of the event and the two before it: at one event every 5
# minutes an incident at the quiet hour is six events, and their mean stands out of the noise where one may not
# (figures: docs/tuning.md).
HOUR_LEVEL_EVENTS = 3
# The run's surprisal counts this share of a single event's: it is one more look at the same events, and at
# full weight it paged more where it found nothing (figures: docs/tuning.md).
RUN_WEIGHT = 0.7
# ... and only a run of events each at least this surprising (1 in 20): at one event a second a deploy's new
# level made short runs of 1-3 nats for days, and they paged (figures: docs/tuning.md).
RUN_FLOOR = 3.0
# For a calm service (``gate.CALM``) a distance from its level is routine only once the history reached it on
# ``CALM_OCCASIONS`` separate occasions (values more than ``OCCASION_GAP`` events apart), not two values: one
# earlier spike of two events is not a habit. More than ``OCCASION_VALUES`` values that far are routine anyway
# (figures: docs/tuning.md).
CALM_OCCASIONS = 4
OCCASION_GAP = 50
OCCASION_VALUES = 30

(
    SLOW_MEAN,
    SLOW_VAR,
    FAST_MEAN,
    FAST_VAR,
    MEDIUM_MEAN,
    LONG_MEAN,
    LAST,
    STEP_VAR,
    ERROR_MEAN,
    ERROR_VAR,
    RAW_MEAN,
    RAW_VAR,
    RAW_ERROR_MEAN,
    RAW_ERROR_VAR,
    FIRST_TIME,
    HOUR_CELL,
    HOUR_USUAL,
    SCORES_SEEN,
    HIGH_SHARE,
    RUN_LAST,
    RUN_RING,  # the first of ``RUN_EVENTS`` columns
) = range(len(NUMBERS) - RUN_EVENTS + 1)


@numba.njit(cache=True, nogil=True)
def forest_path_lengths(x, feature, threshold, children, leaf_value, roots, max_depth, out):
    """``out[i]``: the sum over trees of row i's leaf value (depth plus the leaf's expected remaining path).

    Every row takes ``max_depth`` steps in every tree (a leaf is its own left child, and x > inf is false),
    all rows one level at a time: their steps are independent, so the CPU overlaps their memory reads.
    """
    n = x.shape[0]
    nodes = np.empty(n, dtype=np.intp)
    out[:] = 0.0
    for root in roots:
        nodes[:] = root
        for _ in range(max_depth):
            for i in range(n):
                node = nodes[i]
                nodes[i] = children[2 * node + np.intp(x[i, feature[node]] > threshold[node])]
        for i in range(n):
            out[i] += leaf_value[nodes[i]]


@numba.njit(cache=True, nogil=True)
def judge_scores(ids, scores, numbers, level, share, window, min_scores, quiet, calm_share, calm_scores, calm):
    """Per score in order: ``quiet[i]`` (and ``calm[i]``, the same numbers against ``calm_share`` and
    ``calm_scores``) from its service's numbers before it, then the score is learned (the share above ``level``
    an exact mean over the first ``window`` scores, exponential after)."""
    for i in range(ids.shape[0]):
        ctx = numbers[ids[i]]
        seen = ctx[SCORES_SEEN]
        quiet[i] = seen >= min_scores and ctx[HIGH_SHARE] < share
        calm[i] = seen >= calm_scores and ctx[HIGH_SHARE] < calm_share
        seen += 1.0
        ctx[SCORES_SEEN] = seen
        ctx[HIGH_SHARE] += ((1.0 if scores[i] > level else 0.0) - ctx[HIGH_SHARE]) / min(seen, window)


@numba.njit(cache=True, nogil=True)
def advance_context(
    ids, values, raw, errors, times, rows, warm,
    counts, numbers, recent, learned, arrival, ordered, season_day, season_max, season_level,
    warmup, a_f, a_s, a_m, a_l, clip, err_floor_sq, weight_max, weight_events, weight_days, surprise_alpha,
    history, history_every, min_history, quantile, max_tail,
    bin_seconds, season_days, season_weeks, season_evidence, season_margin, log_values, hour_surprise,
    calm_excess,
):  # fmt: skip
    """Score then learn each event in order (``ContextTracker.features``): fills ``rows``, ``warm``,
    ``hour_surprise`` and ``calm_excess``."""
    for i in range(ids.shape[0]):
        s = ids[i]
        ctx = numbers[s]
        y = values[i]
        e = errors[i]
        count = counts[s]
        surprise = _surprise(
            ctx, recent[s], learned, arrival[s], ordered[s], s, count, raw[i], e, err_floor_sq, surprise_alpha,
            history, history_every, min_history, quantile, max_tail,
            y, times[i], season_day[s], season_max[s], season_level[s],
            bin_seconds, season_days, season_weeks, season_evidence, season_margin, log_values, hour_surprise, i,
            calm_excess,
        )  # fmt: skip
        counts[s] = count + 1
        time = times[i]
        if time == time and (ctx[FIRST_TIME] <= 0.0 or time < ctx[FIRST_TIME]):
            ctx[FIRST_TIME] = time
        if count < warmup:
            _learn_warmup(ctx, count + 1, y, e)
            continue
        slow_mean = ctx[SLOW_MEAN]
        slow_var = ctx[SLOW_VAR]
        sd = math.sqrt(slow_var) + 1e-9 * (abs(slow_mean) + 1.0)
        dev = y - slow_mean
        fast_mean = ctx[FAST_MEAN] + a_f * (y - ctx[FAST_MEAN])
        medium_mean = ctx[MEDIUM_MEAN] + a_m * (y - ctx[MEDIUM_MEAN])
        step = y - ctx[LAST]
        step_sd = math.sqrt(ctx[STEP_VAR]) + 1e-9 * (abs(slow_mean) + 1.0)
        fdev = y - ctx[FAST_MEAN]
        fast_var = (1.0 - a_f) * (ctx[FAST_VAR] + a_f * fdev * fdev)
        e_dev = e - ctx[ERROR_MEAN]
        row = rows[i]
        row[0] = dev / sd
        row[1] = (fast_mean - slow_mean) / sd
        row[2] = (medium_mean - ctx[LONG_MEAN]) / sd
        row[3] = step / step_sd
        row[4] = math.log((fast_var + 1e-12 * sd) / (slow_var + 1e-12 * sd) + 1e-12)
        row[5] = e_dev / math.sqrt(ctx[ERROR_VAR] + err_floor_sq)
        row[6] = surprise
        # The history earns its say by events and by time, whichever is further: a day of a slow service
        # holds its daily rhythm as a thousand events of a fast one do.
        by_events = count / (count + weight_events)
        span = (time - ctx[FIRST_TIME]) / 86_400.0 if time == time else 0.0
        by_time = span / (span + weight_days) if span > 0.0 else 0.0
        row[7] = weight_max * max(by_events, by_time)
        warm[i] = True
        # Learn: an outlier pulls the baselines no further than ``clip`` spreads, so an incident
        # does not become the new normal at once, yet a lasting shift is absorbed in time.
        limit = clip * sd
        c = limit if dev > limit else -limit if dev < -limit else dev
        ctx[SLOW_MEAN] = slow_mean + a_s * c
        ctx[SLOW_VAR] = (1.0 - a_s) * (slow_var + a_s * c * c)
        ctx[FAST_MEAN] = fast_mean
        ctx[FAST_VAR] = fast_var
        ctx[MEDIUM_MEAN] = medium_mean
        ctx[LONG_MEAN] += a_l * (slow_mean + c - ctx[LONG_MEAN])
        step_limit = clip * step_sd
        cs = step_limit if step > step_limit else -step_limit if step < -step_limit else step
        ctx[STEP_VAR] = (1.0 - a_s) * (ctx[STEP_VAR] + a_s * cs * cs)
        ctx[LAST] = y
        ctx[ERROR_MEAN] += a_s * e_dev
        ctx[ERROR_VAR] = (1.0 - a_s) * (ctx[ERROR_VAR] + a_s * e_dev * e_dev)


@numba.njit(cache=True, nogil=True)
def _surprise(
    ctx, recent, learned, arrival, ordered, s, count, y, e, err_floor_sq, long_alpha,
    history, history_every, min_history, quantile, max_tail,
    level, time, season_day, season_max, season_level, bin_seconds, season_days, season_weeks, evidence, margin,
    log_values, hour_surprise, i, calm_excess,
):  # fmt: skip
    """The largest calibrated surprisal of this raw event (0.0 while too young), then learn it.

    Per signal: -log P(signal >= value) in nats, the exact rank in the bulk and an exponential tail (scale:
    the mean excess over the ``quantile``) beyond it. Where the history holds two values as large, the rank
    is the answer, not the tail: a jump the service makes every day is not extrapolated past its own record,
    while one earlier incident alone does not make the next one routine. ``calm_excess[i]``: how much more
    surprising the event is were the level distance's rank the answer only once ``CALM_OCCASIONS`` separate
    occasions reached it, not two values (``_occasions``): what a calm service's event adds
    (``gate.calm_scores``). Then, every ``history_every`` events, the signal joins its history (the oldest value
    leaves once there are ``history``). Every signal's history holds as many values, so the largest bulk
    surprisal is that of the highest rank.

    Time, not counts: a signal in the tail that this service reached at the same hour (or the next or previous
    one, by the event's time) on half (and at least ``evidence``) of the last ``season_days`` days, or of the
    same weekdays of the last ``season_weeks`` weeks, is routine whatever the event rate: its surprisal is at
    most its rank among those days. The signals then join the hour's maxima (``_learn_season``).

    The fifth signal is the hour's own baseline: the distance of the mean ``level`` (log value) of the event
    and the ``HOUR_LEVEL_EVENTS - 1`` before it from the median of that hour's mean level on the last
    ``season_days`` days (until ``evidence`` days have one, or for an event without a time: from the
    service's recent level, so the signal's history is never empty), so a level that is normal at the busy
    hour stands out at the quiet one, at any event rate. It is judged once one earlier day holds its maximum
    at that hour (a fresh baseline's distances are not yet ranked against what that hour usually shows): with
    only one, a value within ``margin`` of that day's maximum is routine. Its "seen twice" needs two days that
    reached the value: one earlier incident at a slow rate leaves several values in its history.
    ``hour_surprise[i]``: that signal's surprisal when it was judged against its own hour's baseline and at
    least one earlier day's maximum at that hour (else 0).

    The run is the smallest of this event's surprisal (the largest of its signals') and the ``RUN_EVENTS - 1``
    before it: a level change the history rates only mildly, but event after event, which one spike never
    makes. It is ranked like a signal against the service's own runs, and by the hour (a nightly job is a run
    every night), and counts, ``RUN_WEIGHT`` of it, only while it rises (a run that holds would otherwise hold
    an incident open through the next one) and once it reaches ``RUN_FLOOR``.
    """
    best = 0.0
    if count >= 2:
        signals, day, hour, has_baseline = _event_signals(
            ctx, recent, count, y, e, err_floor_sq, level, time, season_day, season_max, season_level,
            bin_seconds, season_days, evidence, log_values,
        )  # fmt: skip
        learn = count % history_every == 0
        done = learned[s]
        size = min(done, history)
        k = int(quantile * size)
        highest = 0
        news = 0.0  # the level distance's surprisal, counted by occasions
        signal_count = ordered.shape[0] - 1  # N_SIGNALS (one fewer: a tracker without its rhythm state), the run
        for signal in range(signal_count):
            value = signals[signal]
            sorted_values = ordered[signal]
            position = -1  # where ``value`` goes in the sorted history, once searched
            if size >= min_history:
                if value > sorted_values[k]:
                    tail_value, position, held, by_occasions = _tail_surprisal(
                        sorted_values, size, k, value, max_tail, signal, day, hour, season_day, season_max,
                        season_days, season_weeks, evidence, margin,
                        arrival[signal], done, CALM_OCCASIONS if signal == 0 else 0,
                    )  # fmt: skip
                    news = max(news, by_occasions)
                    if signal == N_SIGNALS - 1 and has_baseline and held >= 1:
                        hour_surprise[i] = tail_value
                    if tail_value > best:
                        best = tail_value
                else:
                    position = np.searchsorted(sorted_values[:size], value)
                    if position > highest:
                        highest = position
            if learn:
                _learn_history(sorted_values, arrival[signal], size, done % history, position, value)
        if best == 0.0 and size >= min_history:
            best = _rank_surprisal(size, highest)
        # The run: the smallest surprisal of the last ``RUN_EVENTS`` events, ranked against the service's runs.
        ctx[RUN_RING + count % RUN_EVENTS] = best
        run = ctx[RUN_RING : RUN_RING + RUN_EVENTS].min()
        rising = run > ctx[RUN_LAST]
        ctx[RUN_LAST] = run
        sorted_values = ordered[signal_count]
        position = -1
        # Judged once its history holds ``min_history`` runs of real surprisals (a young service's are 0).
        if rising and run >= RUN_FLOOR and size >= 2 * min_history and run > sorted_values[k]:
            run_value, position, _, _ = _tail_surprisal(
                sorted_values, size, k, run, max_tail, N_SIGNALS, day, hour, season_day, season_max,
                season_days, season_weeks, evidence, margin, arrival[signal_count], done, 0,
            )  # fmt: skip
            best = max(best, RUN_WEIGHT * run_value)
        if learn:
            _learn_history(sorted_values, arrival[signal_count], size, done % history, position, run)
            learned[s] = done + 1
        if day >= 0:
            _learn_season(season_day, season_max, season_level, day, hour, signals, run, level, has_baseline)
        calm_excess[i] = max(news - best, 0.0)
    _learn_raw(ctx, recent, count + 1, y, e, long_alpha)
    return best


@numba.njit(cache=True, nogil=True)
def _event_signals(
    ctx, recent, count, y, e, err_floor_sq, level, time, season_day, season_max, season_level,
    bin_seconds, season_days, evidence, log_values,
):  # fmt: skip
    """The event's five signals, its day and hour cell (day -1 without a time), and whether the hour has a
    baseline of its own (else the recent level stands in)."""
    width = recent.shape[0]
    mean = ctx[RAW_MEAN]
    tiny = 1e-9 * (abs(mean) + 1.0)
    spread = math.sqrt(ctx[RAW_VAR]) + tiny
    kept = min(count, width)
    total = 0.0
    for j in range(count - kept, count):
        total += recent[j % width]
    step = y - recent[(count - 1) % width]
    shifted = (total + y) / (kept + 1)
    # The step is ranked as it is: a running spread that drifts would make a routine jump look larger
    # once the service turns quieter.
    day = -1
    hour = 0
    cell = 0
    if time == time:  # not NaN: the event has a time
        cell = int(math.floor(time / bin_seconds))
        bins = season_max.shape[1]
        day = cell // bins
        hour = cell - day * bins
    usual = math.nan
    if day >= 0:
        # The hour's baseline (from earlier days only) is computed once an hour a service.
        if ctx[HOUR_CELL] != cell + 1.0:
            ctx[HOUR_CELL] = cell + 1.0
            ctx[HOUR_USUAL] = _hour_baseline(season_day, season_level, day, hour, season_days, evidence)
        usual = ctx[HOUR_USUAL]
    has_baseline = usual == usual
    if not has_baseline:  # no hour baseline yet (or no time): the recent level stands in (a slower one
        usual = ctx[FAST_MEAN]  # would fill this signal's history with the daily cycle's swings)
    signals = (
        abs(y - mean) / spread,
        abs(step),
        abs(shifted - mean) / spread,
        max(e - ctx[RAW_ERROR_MEAN], 0.0) / math.sqrt(ctx[RAW_ERROR_VAR] + err_floor_sq),
        abs(_recent_level(recent, count, level, log_values) - usual),
    )
    return signals, day, hour, has_baseline


@numba.njit(cache=True, nogil=True)
def _tail_surprisal(
    sorted_values, size, k, value, max_tail, signal, day, hour, season_day, season_max,
    season_days, season_weeks, evidence, margin, arrival, done, occasions,
):  # fmt: skip
    """Surprisal of a value above the history's ``quantile`` (index ``k``), its position in the history when
    it had to be searched (-1 otherwise), and how many earlier days hold the signal's maximum at this hour (-1:
    not looked at); and the surprisal were the rank the answer only once ``occasions`` separate occasions of the
    history (``arrival``, ``done`` values learned) reached the value (0: not asked, the same)."""
    position = -1
    held = -1
    start = sorted_values[k]
    tail = size - k
    total = 0.0
    for j in range(k, size):
        total += sorted_values[j]
    excess = total / tail - start
    tail_value = math.log(size / tail) + ((value - start) / excess if excess > 0.0 else max_tail)
    # Seen twice: its rank is the answer. The hour-baseline signal's values must have been reached on two days:
    # at a slow rate one earlier incident at an hour leaves several values in its history.
    by_days = signal == N_SIGNALS - 1 and day >= 0
    capped = False
    extrapolated = tail_value
    if (size >= 2 and value <= sorted_values[size - 2]) and (
        not by_days or _days_reached(season_day, season_max, signal, value, day) >= 2
    ):
        position = np.searchsorted(sorted_values[:size], value)
        rank = _rank_surprisal(size, position)
        capped = rank < tail_value and (
            occasions == 0 or _occasions(arrival, size, done, value, size - position, occasions) < occasions
        )
        tail_value = min(tail_value, rank)
    if day >= 0 and tail_value > 1.0:
        days, weeks, sd, sm = season_days, season_weeks, season_day, season_max
        by_day, held = _season_surprisal(sd, sm, day, hour, signal, value, 1, days, evidence, margin)
        by_week, _ = _season_surprisal(sd, sm, day, hour, signal, value, 7, weeks, evidence, margin)
        tail_value = min(tail_value, by_day, by_week)
        extrapolated = min(extrapolated, by_day, by_week)
        if signal == N_SIGNALS - 1 and held < evidence:  # the hour's baseline is new: one earlier day to go by
            if held == 1:
                one, _ = _season_surprisal(sd, sm, day, hour, signal, value, 1, days, 1, margin)
                tail_value = min(tail_value, one)
            else:
                tail_value = 0.0
    # Counted by occasions: the extrapolated tail where the rank capped it and too few occasions reached it.
    return tail_value, position, held, extrapolated if occasions > 0 and capped else tail_value


@numba.njit(cache=True, nogil=True)
def _occasions(arrival, size, done, value, reached, enough):
    """On how many separate occasions (values more than ``OCCASION_GAP`` events apart) the history reached
    ``value`` (``reached`` of its values did), counted up to ``enough``; ``enough`` outright when more than
    ``OCCASION_VALUES`` values did. Only a value at the top of the history gets here, so the ring is scanned
    rarely."""
    if reached > OCCASION_VALUES:
        return enough
    history = arrival.shape[0]
    ages = np.empty(reached, dtype=np.int64)
    n = 0
    for j in range(size):
        if arrival[j] >= value and n < reached:
            ages[n] = (done - 1 - j) % history  # events since it was learned
            n += 1
    ages = np.sort(ages[:n])
    found = 1 if n > 0 else 0
    for j in range(1, n):
        if ages[j] - ages[j - 1] > OCCASION_GAP:
            found += 1
            if found >= enough:
                break
    return found


@numba.njit(cache=True, nogil=True)
def _season_surprisal(season_day, season_max, day, hour, signal, value, every, back, evidence, margin):
    """Of the days ``day - every``, ``day - 2 * every``, ... (``back`` of them), those that hold the signal's
    maximum at hour ``hour`` or a neighbouring one (``held``; days the service sent nothing do not count) and
    those whose maximum there reached ``value`` within a factor ``margin`` (an hour's maximum is noisy).
    Routine when at least ``evidence`` days and half of the days held reached it (the value is within the
    median day's maximum: one earlier incident at this hour does not make the next one routine): returns
    -log of the share that reached it, else infinity; and ``held``."""
    ring = season_day.shape[0]
    bins = season_max.shape[1]
    found = 0
    held = 0
    for k in range(1, back + 1):
        d = day - k * every
        reached = False
        seen = False
        for offset in range(-1, 2):
            cell = d * bins + hour + offset
            cell_day = cell // bins
            slot = cell_day % ring
            if season_day[slot] == cell_day:
                top = season_max[slot, cell - cell_day * bins, signal]
                seen = seen or top > -math.inf
                reached = reached or margin * top >= value
        found += reached
        held += seen
    if found < evidence or found < held - (held - 1) // 2:
        return math.inf, held
    return math.log((back + 1) / (found + 1)), held


@numba.njit(cache=True, nogil=True)
def _recent_level(recent, count, level, log_values):
    """The mean level (log values, as ``transform``) of this event and the ``HOUR_LEVEL_EVENTS - 1`` before it
    (raw values in the ring)."""
    width = recent.shape[0]
    kept = min(count, width, HOUR_LEVEL_EVENTS - 1)
    total = level
    for j in range(count - kept, count):
        value = recent[j % width]
        total += math.copysign(math.log1p(abs(value)), value) if log_values else value
    return total / (kept + 1)


@numba.njit(cache=True, nogil=True)
def _days_reached(season_day, season_max, signal, value, day):
    """How many days of the ring (``day`` and earlier) hold a maximum of ``signal`` at least ``value`` at some
    hour, counted up to 2."""
    ring = season_day.shape[0]
    found = 0
    for k in range(ring):
        d = day - k
        slot = d % ring
        if d < 0 or season_day[slot] != d:
            continue
        for h in range(season_max.shape[1]):
            if season_max[slot, h, signal] >= value:
                found += 1
                break
        if found >= 2:
            break
    return found


@numba.njit(cache=True, nogil=True)
def _hour_baseline(season_day, season_level, day, hour, back, evidence):
    """The median over the last ``back`` days of the hour's mean level (NaN when fewer than ``evidence`` have
    one): the median, so one incident day does not move it."""
    ring = season_day.shape[0]
    means = np.empty(back)
    n = 0
    for k in range(1, back + 1):
        d = day - k
        slot = d % ring
        if season_day[slot] == d and season_level[slot, hour, 1] > 0.0:
            means[n] = season_level[slot, hour, 0] / season_level[slot, hour, 1]
            n += 1
    if n < evidence:
        return math.nan
    return np.median(means[:n])


@numba.njit(cache=True, nogil=True)
def _learn_season(season_day, season_max, season_level, day, hour, signals, run, level, has_baseline):
    """The hour's maxima of each signal and of the run, and the sum and count of its levels, in a ring of days: a
    day's slot is cleared when a newer day takes it; an event older than the ring (or than the day now in its
    slot) is not learned. The hour-baseline signal's maximum is kept only once the hour has a baseline."""
    ring = season_day.shape[0]
    slot = day % ring
    held = season_day[slot]
    if held > day:
        return
    if held < day:
        season_day[slot] = day
        season_max[slot, :, :] = -math.inf
        season_level[slot, :, :] = 0.0
    season_level[slot, hour, 0] += level
    season_level[slot, hour, 1] += 1.0
    for signal in range(N_SIGNALS if has_baseline else N_SIGNALS - 1):
        if signals[signal] > season_max[slot, hour, signal]:
            season_max[slot, hour, signal] = signals[signal]
    if run > season_max[slot, hour, N_SIGNALS]:
        season_max[slot, hour, N_SIGNALS] = run


@numba.njit(cache=True, nogil=True)
def _rank_surprisal(size, position):
    """-log P(signal >= value) from the history's ranks, for a value whose left insertion point is ``position``."""
    return math.log((size + 1) / (size - position + 1))


@numba.njit(cache=True, nogil=True)
def _learn_history(sorted_values, arrival, size, slot, position, value):
    """``value`` joins a history: at ``slot`` of its ring ``arrival`` (replacing the oldest once full) and into its
    sorted copy (``position``: its left insertion point there, or -1 if not searched yet)."""
    if position < 0:
        position = np.searchsorted(sorted_values[:size], value)
    if size >= arrival.shape[0]:
        _replace(sorted_values, size, arrival[slot], position, value)
    else:
        _insert(sorted_values, size, position, value)
    arrival[slot] = value


@numba.njit(cache=True, nogil=True)
def _insert(sorted_values, size, position, value):
    """Insert ``value`` at ``position`` (its left insertion point) among the first ``size`` (sorted) entries."""
    _shift_right(sorted_values, position, size)
    sorted_values[position] = value


@numba.njit(cache=True, nogil=True)
def _replace(sorted_values, size, old, position, value):
    """Replace one entry equal to ``old`` by ``value`` (left insertion point ``position``) among the first
    ``size`` (sorted) entries, moving only the entries between the two places."""
    j = np.searchsorted(sorted_values[:size], old)
    if position > j:
        _shift_left(sorted_values, j, position - 1)
        sorted_values[position - 1] = value
    else:
        _shift_right(sorted_values, position, j)
        sorted_values[position] = value


# The two shifts are most of the tracker's time (4,000 values a signal). Unsigned indices let LLVM vectorise
# them (no negative-index wraparound to check): 0.25 µs a move of ~1,300 values, against 0.86 µs for a slice
# assignment (which copies an overlapping source first) and 1.0 µs for a signed loop.
@numba.njit(cache=True, nogil=True)
def _shift_left(values, start, stop):
    """``values[start:stop] = values[start + 1 : stop + 1]``, in place."""
    first = np.uintp(start)
    for i in range(np.uintp(stop) - first if stop > start else np.uintp(0)):
        k = first + np.uintp(i)
        values[k] = values[k + np.uintp(1)]


@numba.njit(cache=True, nogil=True)
def _shift_right(values, start, stop):
    """``values[start + 1 : stop + 1] = values[start:stop]``, in place."""
    last = np.uintp(stop)
    for i in range(last - np.uintp(start) if stop > start else np.uintp(0)):
        k = last - np.uintp(i)
        values[k] = values[k - np.uintp(1)]


@numba.njit(cache=True, nogil=True)
def _learn_raw(ctx, recent, count, y, e, long_alpha):
    """Raw running moments: exact while young, exponentially weighted (time constant 1/long_alpha) after."""
    width = recent.shape[0]
    if count == 1:
        ctx[RAW_MEAN] = y
        ctx[RAW_ERROR_MEAN] = e
        recent[0] = y
        return
    alpha = max(1.0 / count, long_alpha)
    delta = y - ctx[RAW_MEAN]
    ctx[RAW_MEAN] += alpha * delta
    ctx[RAW_VAR] = (1.0 - alpha) * (ctx[RAW_VAR] + alpha * delta * delta)
    e_delta = e - ctx[RAW_ERROR_MEAN]
    ctx[RAW_ERROR_MEAN] += alpha * e_delta
    ctx[RAW_ERROR_VAR] = (1.0 - alpha) * (ctx[RAW_ERROR_VAR] + alpha * e_delta * e_delta)
    recent[(count - 1) % width] = y


@numba.njit(cache=True, nogil=True)
def _learn_warmup(ctx, count, y, e):
    """Exact running mean and variance (Welford) until the service has enough history for EWMAs."""
    if count == 1:
        ctx[SLOW_MEAN] = ctx[FAST_MEAN] = ctx[MEDIUM_MEAN] = ctx[LONG_MEAN] = ctx[LAST] = y
        ctx[ERROR_MEAN] = e
        return
    delta = y - ctx[SLOW_MEAN]
    ctx[SLOW_MEAN] += delta / count
    ctx[SLOW_VAR] += (delta * (y - ctx[SLOW_MEAN]) - ctx[SLOW_VAR]) / count  # population variance
    step = y - ctx[LAST]
    ctx[STEP_VAR] += (step * step - ctx[STEP_VAR]) / (count - 1)
    ctx[LAST] = y
    e_delta = e - ctx[ERROR_MEAN]
    ctx[ERROR_MEAN] += e_delta / count
    ctx[ERROR_VAR] += (e_delta * (e - ctx[ERROR_MEAN]) - ctx[ERROR_VAR]) / count
    ctx[FAST_MEAN] = ctx[MEDIUM_MEAN] = ctx[LONG_MEAN] = ctx[SLOW_MEAN]
    ctx[FAST_VAR] = ctx[SLOW_VAR]
