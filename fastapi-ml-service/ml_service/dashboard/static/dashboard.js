// Live dashboard: an initial snapshot, then server-sent updates; charts are plain SVG drawn here.
"use strict";

(function () {
  const BASE = document.body.dataset.base;
  const SVG = "http://www.w3.org/2000/svg";
  const MIN_CHART_HEIGHT = 70;
  const MAX_CHART_HEIGHT = 260; // few services fill the pane; many scroll
  const MAX_ANOMALIES = 100;
  const PAD = { left: 40, right: 6, top: 6, bottom: 14 };
  const FRESH_S = 15;

  const state = {
    fields: null,
    windowS: 300,
    series: new Map(), // service -> Map(t -> row object)
    anomalies: [], // newest first
    counters: {},
    feed: null,
    incidents: { open: [], recent: [] },
    clockOffsetS: 0, // server time minus browser time
    connected: false,
  };
  const panels = new Map(); // service -> {root, latency, error, stats}

  // --- data -------------------------------------------------------------------------------

  function rowObject(row) {
    const out = {};
    state.fields.forEach((name, i) => { out[name] = row[i]; });
    return out;
  }

  function apply(message) {
    if (message.type === "snapshot") {
      state.series = new Map();
      state.anomalies = [];
    }
    state.fields = message.fields;
    state.windowS = message.window_s;
    state.clockOffsetS = message.now - Date.now() / 1000;
    state.counters = message.counters;
    state.feed = message.feed;
    if (message.incidents) state.incidents = message.incidents;
    for (const [service, rows] of Object.entries(message.series)) {
      let buckets = state.series.get(service);
      if (!buckets) { buckets = new Map(); state.series.set(service, buckets); }
      for (const row of rows) { const r = rowObject(row); buckets.set(r.t, r); }
    }
    if (message.anomalies.length) {
      const known = new Set(state.anomalies.map(anomalyKey));
      const fresh = message.anomalies.filter((a) => !known.has(anomalyKey(a)));
      // Newest first by time, whichever partition (service) a batch came from.
      state.anomalies = fresh.concat(state.anomalies).sort((a, b) => b.t - a.t).slice(0, MAX_ANOMALIES);
    }
    prune();
  }

  // Events may carry no event_id: then service, time and score tell two anomalies apart.
  function anomalyKey(a) { return a.event_id || `${a.service}|${a.t}|${a.score}`; }

  // An event's own time in epoch seconds, from event_time, or a timestamp in seconds, milliseconds or ISO 8601.
  function eventTime(a) {
    const v = a.event_time != null ? a.event_time : a.timestamp;
    if (typeof v === "number") return v > 1e11 ? v / 1000 : v;
    if (typeof v === "string" && v) {
      if (/^\d+(\.\d+)?$/.test(v)) return eventTime({ timestamp: Number(v) });
      const parsed = Date.parse(v);
      if (!Number.isNaN(parsed)) return parsed / 1000;
    }
    return null;
  }

  function serverNow() { return Date.now() / 1000 + state.clockOffsetS; }

  function prune() {
    const cutoff = Math.floor(serverNow()) - state.windowS;
    for (const [service, buckets] of state.series) {
      for (const t of buckets.keys()) if (t < cutoff) buckets.delete(t);
      if (buckets.size === 0) state.series.delete(service);
    }
  }

  // --- formatting -------------------------------------------------------------------------

  const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const oneFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  function clock(t) {
    const d = new Date(t * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }
  function ms(v) { return v >= 100 ? intFmt.format(v) + " ms" : oneFmt.format(v) + " ms"; }
  function pct(v, digits) { return (v * 100).toFixed(digits) + "%"; }
  function axisPct(v) { const p = v * 100; return (Number.isInteger(p) ? p : +p.toFixed(1)) + "%"; }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function el(tag, attrs, parent) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  // --- charts -----------------------------------------------------------------------------

  // The service's recent band of one signal: median and a robust spread of its healthy seconds.
  function band(rows, key, floor) {
    const values = rows.filter((r) => !r.anomalies).map((r) => r[key]).sort((a, b) => a - b);
    if (!values.length) return { mid: 0, spread: floor };
    const mid = values[Math.floor(values.length / 2)];
    const deviations = values.map((v) => Math.abs(v - mid)).sort((a, b) => a - b);
    return { mid, spread: Math.max(1.4826 * deviations[Math.floor(deviations.length / 2)], floor, mid * 0.05) };
  }

  // Which signal triggered a second's anomaly: the verdict's explanation when it names one, else the signal
  // further out of the service's recent band. Only that chart gets the dot.
  function triggeredSignal(row, bands) {
    if (row.anomaly_signal) return /err/i.test(row.anomaly_signal) ? "error" : "latency";
    const zLatency = Math.abs(row.anomaly_latency_ms - bands.latency.mid) / bands.latency.spread;
    const zError = Math.abs(row.anomaly_error_rate - bands.error.mid) / bands.error.spread;
    return zError > zLatency ? "error" : "latency";
  }

  // Draws one series (and an optional faint companion) with anomaly markers; returns the points drawn.
  function drawChart(svg, service, rows, spec, now, height, bands) {
    svg.style.height = height + "px";
    const width = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 300, 120);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.replaceChildren();
    const x0 = now - state.windowS;
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    let top = spec.floor;
    const marked = rows.filter((r) => r.anomalies && triggeredSignal(r, bands) === spec.signal);
    for (const r of rows) top = Math.max(top, r[spec.key], spec.companion ? r[spec.companion] : 0);
    for (const r of marked) top = Math.max(top, r[spec.marker]);
    top = niceMax(top);
    const x = (t) => PAD.left + ((t - x0) / state.windowS) * plotW;
    const y = (v) => PAD.top + plotH - (Math.min(v, top) / top) * plotH;

    for (const frac of [0, 0.5, 1]) {
      const gy = y(top * frac);
      el("svg:line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: gy, y2: gy }, svg);
      el("svg:text", { class: "axis-label", x: PAD.left - 4, y: gy + 3, "text-anchor": "end", text: spec.format(top * frac) }, svg);
    }
    const firstMinute = Math.ceil(x0 / 60) * 60;
    for (let t = firstMinute; t <= now; t += 60) {
      el("svg:line", { class: "grid", x1: x(t), x2: x(t), y1: PAD.top, y2: PAD.top + plotH }, svg);
      el("svg:text", { class: "axis-label", x: x(t), y: height - 2, "text-anchor": "middle", text: clock(t).slice(0, 5) }, svg);
    }

    const path = (key) => {
      let d = "";
      let prev = null;
      for (const r of rows) {
        d += (prev === null || r.t - prev > 2 ? "M" : "L") + x(r.t + 0.5).toFixed(1) + "," + y(r[key]).toFixed(1);
        prev = r.t;
      }
      return d;
    };
    if (spec.companion) el("svg:path", { class: "line line-max", d: path(spec.companion) }, svg);
    el("svg:path", {
      class: "line " + spec.lineClass, d: path(spec.key),
      "data-testid": "live-points", "data-service": service, "data-points": rows.length,
    }, svg);
    for (const r of marked) {
      const dot = el("svg:circle", {
        class: "marker", r: 4, cx: x(r.t + 0.5).toFixed(1), cy: y(r[spec.marker]).toFixed(1),
        "data-testid": "anomaly-marker", "data-service": service,
        "data-event-id": r.anomaly_event_id, "data-score": r.anomaly_score, "data-signal": spec.signal,
      }, svg);
      el("svg:title", {
        text: `${clock(r.t)} ${service}: ${r.anomalies} anomal${r.anomalies === 1 ? "y" : "ies"}, ` +
          `top score ${r.anomaly_score.toFixed(3)} (latency ${ms(r.anomaly_latency_ms)}, errors ${pct(r.anomaly_error_rate, 1)})`,
      }, dot);
    }
    return rows.length;
  }

  const LATENCY = {
    key: "mean_latency_ms", companion: "max_latency_ms", marker: "anomaly_latency_ms",
    lineClass: "line-latency", floor: 1, format: (v) => intFmt.format(v), signal: "latency",
  };
  const ERRORS = {
    key: "mean_error_rate", companion: null, marker: "anomaly_error_rate",
    lineClass: "line-error", floor: 0.01, format: axisPct, signal: "error",
  };

  function panelFor(service) {
    let panel = panels.get(service);
    if (panel) return panel;
    const root = el("div", { class: "service", "data-testid": "service-panel", "data-service": service });
    const head = el("div", {}, root);
    el("div", { class: "service-name", text: service }, head);
    const stats = el("div", { class: "service-stats" }, head);
    const latencyBox = el("div", {}, root);
    el("div", { class: "chart-title", text: "latency (ms)" }, latencyBox);
    const latency = el("svg:svg", { class: "chart", "data-chart": "latency", preserveAspectRatio: "none" }, latencyBox);
    const errorBox = el("div", {}, root);
    el("div", { class: "chart-title", text: "error rate" }, errorBox);
    const error = el("svg:svg", { class: "chart", "data-chart": "error-rate", preserveAspectRatio: "none" }, errorBox);
    panel = { root, latency, error, stats };
    panels.set(service, panel);
    const container = document.getElementById("services");
    const names = [...panels.keys()].sort();
    const next = names[names.indexOf(service) + 1];
    container.insertBefore(root, next ? panels.get(next).root : null);
    return panel;
  }

  // --- rendering --------------------------------------------------------------------------

  function renderServices(now) {
    let points = 0;
    // Few services get taller charts; many scroll.
    const room = document.getElementById("services").clientHeight / Math.max(1, state.series.size) - 34;
    const height = Math.round(Math.max(MIN_CHART_HEIGHT, Math.min(MAX_CHART_HEIGHT, room)));
    for (const [service, panel] of panels) {
      if (!state.series.has(service)) { panel.root.remove(); panels.delete(service); }
    }
    for (const [service, buckets] of state.series) {
      const rows = [...buckets.values()].sort((a, b) => a.t - b.t);
      const panel = panelFor(service);
      const bands = { latency: band(rows, "mean_latency_ms", 1), error: band(rows, "mean_error_rate", 0.002) };
      points += drawChart(panel.latency, service, rows, LATENCY, now, height, bands);
      drawChart(panel.error, service, rows, ERRORS, now, height, bands);
      const recent = rows.filter((r) => r.t >= now - 6 && r.t < now - 1);
      const rate = recent.reduce((s, r) => s + r.count, 0) / 5;
      const anomalies = rows.reduce((s, r) => s + r.anomalies, 0);
      panel.stats.innerHTML = "";
      panel.stats.append(`${oneFmt.format(rate)} ev/s`);
      el("br", {}, panel.stats);
      if (anomalies) el("b", { text: `${anomalies} anomal${anomalies === 1 ? "y" : "ies"}` }, panel.stats);
      else panel.stats.append("no anomaly");
    }
    document.getElementById("services-empty").classList.toggle("hidden", state.series.size > 0);
    document.getElementById("live-points-total").textContent = String(points);
  }

  function renderCounters() {
    const c = state.counters;
    const set = (id, text, alert) => {
      const node = document.getElementById(id);
      node.textContent = text;
      node.classList.toggle("alert", Boolean(alert));
    };
    const minutes = Math.round(state.windowS / 60);
    set("counter-events-per-s", c.events_per_s == null ? "–" : oneFmt.format(c.events_per_s));
    set("counter-anomaly-rate", c.anomaly_rate == null ? "–" : pct(c.anomaly_rate, 2), c.anomalies_in_window > 0);
    document.getElementById("hint-anomaly-rate").textContent =
      `${intFmt.format(c.anomalies_in_window || 0)} of ${intFmt.format(c.events_in_window || 0)} in the last ${minutes} min`;
    set("counter-dead-lettered", intFmt.format(c.dead_lettered_in_window || 0), c.dead_lettered_in_window > 0);
    document.getElementById("hint-dead-lettered").textContent =
      `last ${minutes} min` + (c.dead_lettered_total == null ? "" : ` · ${intFmt.format(c.dead_lettered_total)} in the topic`);
    set("counter-consumer-lag", c.consumer_lag == null ? "–" : intFmt.format(c.consumer_lag), c.consumer_lag > 1000);
    const group = state.feed ? state.feed.processor_group : "processor";
    document.getElementById("hint-consumer-lag").textContent = c.consumer_lag == null
      ? `group "${group}" has committed nothing yet`
      : `group "${group}", messages not yet processed`;
    document.getElementById("window-label").textContent = `last ${minutes} min · per-second buckets`;
  }

  function renderAnomalies(now) {
    const body = document.getElementById("anomaly-rows");
    body.replaceChildren();
    for (const a of state.anomalies) {
      const at = eventTime(a);
      const tr = el("tr", {
        "data-testid": "anomaly-row", "data-service": a.service, "data-event-id": a.event_id || "",
        "data-score": a.score, "data-t": a.t,
        title: `${a.event_id || "no event id"} · event time ${at == null ? "unknown" : new Date(at * 1000).toISOString()}` +
          ` · model ${a.model_version}` + (a.signal ? ` · driven by ${a.signal}` : ""),
      }, body);
      if (now - a.t < FRESH_S) tr.classList.add("fresh");
      el("td", { text: clock(a.t) }, tr);
      el("td", { class: "service-cell", text: a.service }, tr);
      el("td", { class: "num", text: ms(a.latency_ms) }, tr);
      el("td", { class: "num", text: pct(a.error_rate, 1) }, tr);
      // Severity: the one scale shown (1 = the alert threshold, whichever model scored); the raw score otherwise.
      el("td", { class: "num score", text: a.severity != null ? a.severity.toFixed(2) : a.score.toFixed(3),
        title: a.why || "" }, tr);
      const label = el("td", {}, tr);
      el("span", { class: "label-tag " + (a.label === "normal" ? "normal" : ""), text: a.label }, label);
    }
    document.getElementById("anomalies-empty").classList.toggle("hidden", state.anomalies.length > 0);
    document.getElementById("anomaly-count").textContent = state.anomalies.length ? `${state.anomalies.length} shown` : "";
  }

  function renderIncidents() {
    const list = document.getElementById("incident-rows");
    list.replaceChildren();
    const all = state.incidents.open.concat(state.incidents.recent);
    for (const i of all) {
      const open = i.status === "open";
      const li = el("li", { class: "incident " + (open ? "incident-open" : "incident-resolved"),
        "data-testid": "incident-row", "data-incident-id": i.incident_id, "data-status": i.status,
        title: i.incident_id }, list);
      el("b", { class: "incident-state", text: open ? "OPEN" : "resolved" }, li);
      el("span", { class: "service-cell", text: i.service }, li);
      el("span", { class: "incident-why", text: i.why }, li);
      const when = open ? `since ${clock(i.started_at)}` : `${clock(i.started_at)}–${clock(i.resolved_at)}`;
      el("span", { class: "muted", text: `${i.alerts} alert${i.alerts === 1 ? "" : "s"} · peak severity ` +
        `${i.peak_severity.toFixed(2)} · ${when}` }, li);
    }
    document.getElementById("incidents-empty").classList.toggle("hidden", all.length > 0);
    document.getElementById("incident-count").textContent = `${state.incidents.open.length} open`;
  }

  function renderStatus() {
    const node = document.getElementById("feed-status");
    const feed = state.feed;
    let kind = feed ? feed.state : "starting";
    let text = { live: "live", starting: "connecting…", waiting_for_topic: "waiting for topic",
      broker_unavailable: "Kafka unavailable", idle: "idle" }[kind] || kind;
    if (!state.connected) { kind = "reconnecting"; text = "reconnecting…"; }
    node.className = "status status-" + kind;
    node.textContent = text;
    node.title = feed ? feed.detail : "";
    if (feed) {
      document.getElementById("foot-topics").textContent =
        `verdicts from ${feed.topics.predictions} · dead letters from ${feed.topics.dead_letter} · lag on ${feed.topics.logs}`;
    }
  }

  let scheduled = false;
  function render() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      if (!state.fields) return;
      prune();
      const now = serverNow();
      renderServices(now);
      renderCounters();
      renderAnomalies(now);
      renderIncidents();
      renderStatus();
    });
  }

  // --- wiring -----------------------------------------------------------------------------

  function follow() {
    const source = new EventSource(BASE + "/stream");
    source.onopen = () => { state.connected = true; renderStatus(); };
    source.onmessage = (event) => { state.connected = true; apply(JSON.parse(event.data)); render(); };
    source.onerror = () => { state.connected = false; renderStatus(); };
  }

  fetch(BASE + "/api/snapshot")
    .then((response) => (response.ok ? response.json() : null))
    .then((snapshot) => { if (snapshot) { apply(snapshot); render(); } })
    .catch(() => {})
    .finally(follow);
  setInterval(render, 1000); // keeps the time axis sliding between updates
  window.addEventListener("resize", render);
})();
