"""The compiled loops of the detector (numba): what runs for every event and every tree.

* ``advance_context``: ``ContextTracker``'s per-event loop over its per-service arrays (the processor's hot loop).
* ``forest_path_lengths``: ``FlatForest``'s walk of every row down every tree (the service's context scoring).

Compiled on first use and cached beside this file (``cache=True``); ``nogil``, so kafka-python's IO threads
run while a batch is scored. numba costs a process ~30 MiB of private memory plus ~130 MiB of LLVM library
pages (shared between processes), so ``tracker`` imports this module only when a tracker is built.
"""

import math

import numba
import numpy as np

from streaming_detector.tracker import N_SIGNALS, NUMBERS

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
) = range(len(NUMBERS))


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
def advance_context(
    ids, values, raw, errors, rows, warm,
    counts, numbers, recent, learned, arrival, ordered,
    warmup, a_f, a_s, a_m, a_l, clip, err_floor_sq, weight_max, weight_events, surprise_alpha,
    history, history_every, min_history, quantile, max_tail,
):  # fmt: skip
    """Score then learn each event in order (``ContextTracker.features``): fills ``rows`` and ``warm``."""
    for i in range(ids.shape[0]):
        s = ids[i]
        ctx = numbers[s]
        y = values[i]
        e = errors[i]
        count = counts[s]
        surprise = _surprise(
            ctx, recent[s], learned, arrival[s], ordered[s], s, count, raw[i], e, err_floor_sq, surprise_alpha,
            history, history_every, min_history, quantile, max_tail,
        )  # fmt: skip
        counts[s] = count + 1
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
        row[7] = weight_max * count / (count + weight_events)
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
):  # fmt: skip
    """The largest calibrated surprisal of this raw event (0.0 while too young), then learn it.

    Per signal: -log P(signal >= value) in nats, the exact rank in the bulk and an exponential tail (scale:
    the mean excess over the ``quantile``) beyond it. Where the history holds two values as large, the rank
    is the answer, not the tail: a jump the service makes every day is not extrapolated past its own record,
    while one earlier incident alone does not make the next one routine. Then, every ``history_every``
    events, the signal joins its history (the oldest value leaves once there are ``history``). Every
    signal's history holds as many values, so the largest bulk surprisal is that of the highest rank.
    """
    width = recent.shape[0]
    best = 0.0
    if count >= 2:
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
        signals = (
            abs(y - mean) / spread,
            abs(step),
            abs(shifted - mean) / spread,
            max(e - ctx[RAW_ERROR_MEAN], 0.0) / math.sqrt(ctx[RAW_ERROR_VAR] + err_floor_sq),
        )
        learn = count % history_every == 0
        done = learned[s]
        size = min(done, history)
        k = int(quantile * size)
        highest = 0
        for signal in range(N_SIGNALS):
            value = signals[signal]
            sorted_values = ordered[signal]
            position = -1  # where ``value`` goes in the sorted history, once searched
            if size >= min_history:
                start = sorted_values[k]
                if value > start:
                    tail = size - k
                    total = 0.0
                    for j in range(k, size):
                        total += sorted_values[j]
                    excess = total / tail - start
                    tail_value = math.log(size / tail) + ((value - start) / excess if excess > 0.0 else max_tail)
                    if size >= 2 and value <= sorted_values[size - 2]:  # seen twice: its rank is the answer
                        position = np.searchsorted(sorted_values[:size], value)
                        tail_value = min(tail_value, _rank_surprisal(size, position))
                    if tail_value > best:
                        best = tail_value
                else:
                    position = np.searchsorted(sorted_values[:size], value)
                    if position > highest:
                        highest = position
            if learn:
                if position < 0:
                    position = np.searchsorted(sorted_values[:size], value)
                slot = done % history
                if size >= history:
                    _replace(sorted_values, size, arrival[signal, slot], position, value)
                else:
                    _insert(sorted_values, size, position, value)
                arrival[signal, slot] = value
        if learn:
            learned[s] = done + 1
        if best == 0.0 and size >= min_history:
            best = _rank_surprisal(size, highest)
    _learn_raw(ctx, recent, count + 1, y, e, long_alpha)
    return best


@numba.njit(cache=True, nogil=True)
def _rank_surprisal(size, position):
    """-log P(signal >= value) from the history's ranks, for a value whose left insertion point is ``position``."""
    return math.log((size + 1) / (size - position + 1))


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
