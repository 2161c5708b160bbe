// Job page: the history from the API (downsampled on the server when a series is long), then
// the exact live tail over the job's websocket. Events are numbered per job; after the history
// snapshot the page applies each number once, in order, and re-syncs from the server whenever
// it sees a gap or reconnects (with back-off), so it never shows gaps or duplicate points.
(function () {
  "use strict";
  const page = document.getElementById("job-page");
  if (!page) return;
  const job = JSON.parse(document.getElementById("job-data").textContent);
  const FINAL = ["succeeded", "failed", "cancelled"];
  const LOWER_IS_BETTER = ["loss", "mse", "mae", "perplexity"];
  const HISTORY_POINTS = 1000; // per series; the live tail adds to it exactly
  const MAX_LOG_LINES = 5000;
  let lastSeq = 0;
  let status = job.status;
  let points = 0; // metric events drawn
  let ws = null;
  let retries = 0;
  let resyncing = false;
  let startedAt = job.started_at ? Date.parse(job.started_at) : null;
  let finishedAt = job.finished_at ? Date.parse(job.finished_at) : null;

  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const colors = { train: color("--train", "#2563eb"), val: color("--val", "#dc2626") };
  const gridColor = color("--border", "#e4e4e7");
  const textColor = color("--muted", "#6b7280");

  // -- charts ---------------------------------------------------------------------------------
  // Raw points ({step, epoch, t, y}) per split and value name; a chart shows one value name for
  // each split, against the x axis picked (step, epoch or wall time since the start).
  const K = window.ChartKit;
  const raw = { train: {}, val: {} };
  const shown = new Map(); // raw array -> {alpha, axis, t0, data, ema, n, i}
  let alpha = 0;
  let axis = "step";
  let metricName = null;
  let view = null; // the x range all charts show, {min, max}; null: everything
  const chartKeys = { loss: () => "loss", metric: () => metricName, lr: () => "lr", speed: () => "samples_per_s" };

  function t0() {
    if (startedAt) return startedAt / 1000;
    let first = Infinity;
    for (const bySplit of Object.values(raw)) for (const data of Object.values(bySplit)) if (data.length && data[0].t < first) first = data[0].t;
    return Number.isFinite(first) ? first : 0;
  }

  // Every visible series at the hovered x: each dataset's point nearest to the pointer.
  if (typeof Chart !== "undefined") {
    Chart.Interaction.modes.eachSeries = function (chart, e) {
      const items = [];
      const area = chart.chartArea;
      if (!area || e.x < area.left || e.x > area.right) return items;
      chart.data.datasets.forEach((_, i) => {
        const meta = chart.getDatasetMeta(i);
        if (!chart.isDatasetVisible(i) || !meta.data.length) return;
        const index = K.nearestIndex(meta.data.map((el) => el.x), e.x);
        if (index >= 0) items.push({ element: meta.data[index], datasetIndex: i, index: index });
      });
      return items;
    };
  }

  // The drag-to-zoom band, drawn over the chart while the pointer is down.
  const bandPlugin = {
    id: "zoomBand",
    afterDraw(chart) {
      const band = chart.$band;
      if (!band) return;
      const { top, bottom } = chart.chartArea;
      const ctx = chart.ctx;
      ctx.save();
      ctx.fillStyle = "rgba(37, 99, 235, 0.15)";
      ctx.strokeStyle = colors.train;
      ctx.fillRect(Math.min(band.from, band.to), top, Math.abs(band.to - band.from), bottom - top);
      ctx.strokeRect(Math.min(band.from, band.to), top, Math.abs(band.to - band.from), bottom - top);
      ctx.restore();
    },
  };

  let hoverX = null;
  function xLabel(v) { return axis === "time" ? K.formatDuration(v, Math.abs(v) < 10 ? 1 : 0) : fmt(v); }

  function makeChart(canvasId) {
    if (typeof Chart === "undefined") return null;
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: { datasets: [] },
      plugins: [bandPlugin],
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "eachSeries", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "step", color: textColor }, grid: { color: gridColor },
               ticks: { color: textColor, maxTicksLimit: 8, callback: xTick } },
          y: { type: "linear", grid: { color: gridColor }, ticks: { color: textColor, maxTicksLimit: 7, callback: yTick } },
        },
        plugins: {
          decimation: { enabled: true, algorithm: "lttb", samples: 800 },
          legend: { position: "bottom", labels: { color: textColor } },
          tooltip: { callbacks: {
            title: (items) => { hoverX = items.length ? items[0].parsed.x : null; return items.length ? K.AXES[axis].title + " " + xLabel(hoverX) : ""; },
            // A series without a point at exactly that x (validation every epoch) says where its nearest is.
            label: (item) => item.dataset.label + ": " + fmt(item.parsed.y) + (item.parsed.x !== hoverX ? " (at " + xLabel(item.parsed.x) + ")" : ""),
          } },
        },
        elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1.5 } },
      },
    });
  }
  // Chart.js passes every tick of the axis: the labels are chosen together, so neighbours differ.
  function yTick(v, i, ticks) { return K.tickLabels(ticks.map((t) => t.value))[i]; }
  function xTick(v, i, ticks) {
    const values = ticks.map((t) => t.value);
    return (axis === "time" ? K.durationLabels(values) : K.tickLabels(values))[i];
  }
  const charts = {};
  for (const name of Object.keys(chartKeys)) charts[name] = makeChart("chart-" + name);

  function series(split, key) {
    const bySplit = raw[split] || (raw[split] = {});
    return bySplit[key] || (bySplit[key] = []);
  }

  // The points as drawn: x on the chosen axis, train curves smoothed by a debiased exponential
  // moving average (as TensorBoard does; the LR schedule is exact, not noisy), incrementally.
  function display(split, key, data) {
    const a = split === "train" && key !== "lr" ? alpha : 0;
    const origin = axis === "time" ? t0() : 0;
    let s = shown.get(data);
    if (!s || s.alpha !== a || s.axis !== axis || s.t0 !== origin) {
      s = { alpha: a, axis: axis, t0: origin, data: [], ema: 0, n: 0, i: 0 };
      shown.set(data, s);
    }
    for (; s.i < data.length; s.i++) {
      const p = data[s.i];
      const x = K.xOf(p, axis, origin);
      if (x === null) continue;
      let y = p.y;
      if (a) {
        s.n += 1;
        s.ema = a * s.ema + (1 - a) * p.y;
        y = s.ema / (1 - Math.pow(a, s.n));
      }
      s.data.push({ x: x, y: y });
    }
    return s.data;
  }

  function syncChart(name) {
    const chart = charts[name];
    const key = chartKeys[name]();
    const wanted = [];
    for (const split of ["train", "val"]) {
      const data = key && raw[split] && raw[split][key];
      if (data && data.length) wanted.push({ split: split, data: data });
    }
    const figure = document.getElementById("figure-" + name);
    if (figure) figure.dataset.empty = wanted.length ? "false" : "true";
    if (!chart) return;
    chart.data.datasets = wanted.map((w) => {
      const label = w.split + " " + label_(key) + (alpha && w.split === "train" && key !== "lr" ? " (smoothed)" : "");
      return { label: label, data: display(w.split, key, w.data), borderColor: colors[w.split], backgroundColor: colors[w.split],
               pointRadius: w.split === "val" && w.data.length < 60 ? 2 : 0 };
    });
    chart.options.scales.x.title.text = K.AXES[axis].title;
    chart.options.scales.x.min = view ? view.min : undefined;
    chart.options.scales.x.max = view ? view.max : undefined;
  }
  function label_(key) { return key === "r2" ? "R²" : key === "samples_per_s" ? "throughput" : key === "lr" ? "lr" : key; }

  let redrawPending = false;
  function redraw() {
    if (redrawPending) return;
    redrawPending = true;
    requestAnimationFrame(() => {
      redrawPending = false;
      for (const name of Object.keys(charts)) {
        syncChart(name);
        if (charts[name]) charts[name].update("none");
      }
      document.getElementById("charts").dataset.points = String(points);
    });
  }

  // -- zoom and pan: one x range for all four charts ------------------------------------------
  function extent() {
    let min = Infinity, max = -Infinity;
    for (const chart of Object.values(charts)) {
      if (!chart) continue;
      for (const d of chart.data.datasets) {
        if (!d.data.length) continue;
        min = Math.min(min, d.data[0].x);
        max = Math.max(max, d.data[d.data.length - 1].x);
      }
    }
    return min < max ? { min: min, max: max } : null;
  }
  function setView(range) {
    const bounds = extent();
    if (range && bounds && (range.min <= bounds.min && range.max >= bounds.max)) range = null; // all of it
    if (range && !(range.max > range.min)) return;
    view = range;
    document.getElementById("charts").dataset.zoomed = view ? "true" : "false";
    for (const b of document.querySelectorAll("#charts [data-reset]")) b.hidden = !view;
    redraw();
  }
  function current(chart) { return view || { min: chart.scales.x.min, max: chart.scales.x.max }; }
  function zoomBy(chart, factor, centerPx) {
    const r = current(chart);
    const center = centerPx === undefined ? (r.min + r.max) / 2 : chart.scales.x.getValueForPixel(centerPx);
    setView(K.zoomRange(r.min, r.max, center, factor, extent()));
  }
  function panBy(chart, delta) {
    const r = current(chart);
    setView(K.panRange(r.min, r.max, delta, extent()));
  }

  function bindZoom(name) {
    const chart = charts[name];
    if (!chart) return;
    const canvas = chart.canvas;
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      const x = e.offsetX;
      const area = chart.chartArea;
      if (x < area.left || x > area.right || e.offsetY < area.top || e.offsetY > area.bottom) return;
      drag = { from: x, pan: e.shiftKey, range: current(chart), value: chart.scales.x.getValueForPixel(x) };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const area = chart.chartArea;
      const x = Math.min(area.right, Math.max(area.left, e.offsetX));
      if (drag.pan) {
        const r = drag.range;
        const perPx = (r.max - r.min) / (area.right - area.left);
        setView(K.panRange(r.min, r.max, (drag.from - x) * perPx, extent()));
      } else {
        chart.$band = { from: drag.from, to: x };
        chart.draw();
      }
    });
    const end = (e) => {
      if (!drag) return;
      const band = chart.$band;
      chart.$band = null;
      const wasPan = drag.pan;
      drag = null;
      if (!wasPan && band && Math.abs(band.to - band.from) > 4) {
        const a = chart.scales.x.getValueForPixel(band.from), b = chart.scales.x.getValueForPixel(band.to);
        setView({ min: Math.min(a, b), max: Math.max(a, b) });
      } else chart.draw();
      if (e && e.pointerId !== undefined && canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("dblclick", () => setView(null));
    // Ctrl (or ⌘) + wheel zooms, as maps do; a plain wheel keeps scrolling the page.
    canvas.addEventListener("wheel", (e) => {
      if (!e.ctrlKey && !e.metaKey) return;
      e.preventDefault();
      zoomBy(chart, Math.exp(Math.max(-1, Math.min(1, e.deltaY / 300))), e.offsetX);
    }, { passive: false });
    canvas.addEventListener("keydown", (e) => {
      const r = current(chart);
      const step = (r.max - r.min) / 10;
      if (e.key === "+" || e.key === "=") zoomBy(chart, 0.8);
      else if (e.key === "-" || e.key === "_") zoomBy(chart, 1.25);
      else if (e.key === "ArrowLeft") panBy(chart, -step);
      else if (e.key === "ArrowRight") panBy(chart, step);
      else if (e.key === "0" || e.key === "Escape") setView(null);
      else return;
      e.preventDefault();
    });
  }
  for (const name of Object.keys(charts)) bindZoom(name);
  for (const b of document.querySelectorAll("#charts [data-reset]")) b.addEventListener("click", () => setView(null));
  document.getElementById("x-axis").addEventListener("change", (e) => {
    axis = e.target.value in K.AXES ? e.target.value : "step";
    view = null;
    setView(null);
  });

  // -- export: a chart's whole stored history as CSV (not the drawn, downsampled points), or
  // the chart as drawn as PNG.
  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
  function fileStem(name) { return (job.name || "job").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") + "-" + name; }
  async function allEvents() {
    const events = [];
    let after = 0;
    for (;;) {
      const r = await fetch(page.dataset.eventsUrl + "?after=" + after, { credentials: "same-origin" });
      if (!r.ok) throw new Error("events: HTTP " + r.status);
      const body = await r.json();
      events.push(...body.events);
      if (!body.events.length) return events;
      after = body.events[body.events.length - 1].seq;
      if (after >= body.last_seq) return events;
    }
  }
  for (const b of document.querySelectorAll("#charts [data-csv]")) {
    b.addEventListener("click", async () => {
      const key = chartKeys[b.dataset.csv]();
      if (!key) return;
      b.disabled = true;
      try { saveBlob(new Blob([K.metricCSV(await allEvents(), key)], { type: "text/csv" }), fileStem(key) + ".csv"); }
      catch (e) { console.warn(e); }
      finally { b.disabled = false; }
    });
  }
  for (const b of document.querySelectorAll("#charts [data-png]")) {
    b.addEventListener("click", () => {
      const chart = charts[b.dataset.png];
      if (!chart) return;
      const src = chart.canvas;
      const out = el("canvas", { width: src.width, height: src.height });
      const ctx = out.getContext("2d");
      ctx.fillStyle = color("--card", "#ffffff"); // the page's card colour, not a transparent PNG
      ctx.fillRect(0, 0, out.width, out.height);
      ctx.drawImage(src, 0, 0);
      out.toBlob((blob) => blob && saveBlob(blob, fileStem(chartKeys[b.dataset.png]() || b.dataset.png) + ".png"), "image/png");
    });
  }

  // Controls: smoothing, the metric shown, log scales (all keyboard operable native inputs).
  const smoothing = document.getElementById("smoothing");
  smoothing.addEventListener("input", () => {
    alpha = Number(smoothing.value);
    shown.clear();
    document.getElementById("smoothing-value").textContent = alpha ? alpha.toFixed(2) : "off";
    redraw();
  });
  const metricSelect = document.getElementById("metric-select");
  metricSelect.addEventListener("change", () => { setMetric(metricSelect.value); redraw(); });
  for (const box of document.querySelectorAll("#charts input[data-chart]")) {
    box.addEventListener("change", () => {
      const chart = charts[box.dataset.chart];
      if (!chart) return;
      chart.options.scales.y.type = box.checked ? "logarithmic" : "linear";
      chart.update("none");
    });
  }
  function setMetric(name) {
    metricName = name;
    document.getElementById("metric-caption").textContent = name === "r2" ? "R²" : name.charAt(0).toUpperCase() + name.slice(1);
    if (metricSelect.value !== name) metricSelect.value = name;
  }
  const PREFERRED = ["accuracy", "r2", "perplexity", "f1"];
  function offerMetrics(values) {
    const known = new Set(Array.from(metricSelect.options, (o) => o.value));
    for (const k of Object.keys(values)) {
      if (known.has(k) || ["loss", "lr", "samples_per_s"].includes(k) || typeof values[k] !== "number") continue;
      metricSelect.append(new Option(k === "r2" ? "R²" : k, k));
    }
    if (!metricName || !PREFERRED.includes(metricName)) {
      const best = PREFERRED.find((k) => k in values) || Array.from(metricSelect.options, (o) => o.value)[0];
      if (best && best !== metricName) setMetric(best);
    }
  }

  // -- events -----------------------------------------------------------------------------------
  const monitor = page.dataset.monitor || "loss";
  const maximise = page.dataset.mode ? page.dataset.mode === "max" : !LOWER_IS_BETTER.includes(monitor);
  let best = null;

  function onMetric(ev) {
    const v = ev.values || {};
    if (ev.split === "test") { renderTest(v); return; } // one final evaluation: a table, not a curve
    const split = ev.split === "val" ? "val" : "train";
    for (const [k, y] of Object.entries(v)) {
      if (typeof y === "number" && Number.isFinite(y)) series(split, k).push({ step: ev.step, epoch: ev.epoch, t: ev.t, y: y });
    }
    offerMetrics(v);
    if (v.perplexity !== undefined) document.getElementById("speed-caption").textContent = "Throughput (tokens/s)";
    points += 1;
    if (split === "val") {
      renderMetrics(v, ev.epoch);
      const m = v[monitor];
      if (typeof m === "number" && (best === null || (maximise ? m > best.value : m < best.value))) {
        best = { value: m, epoch: ev.epoch };
        document.getElementById("job-best").textContent = "Best validation " + monitor + ": " + fmt(m) + " (epoch " + Math.round(ev.epoch) + ")";
      }
    }
    redraw();
  }

  function fmt(x) { return typeof x === "number" ? (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) : x.toPrecision(4)) : String(x); }

  function renderMetrics(values, epoch) {
    const body = document.querySelector("#metrics-table tbody");
    body.replaceChildren();
    const tr0 = document.createElement("tr");
    tr0.append(Object.assign(document.createElement("th"), { textContent: "epoch" }), Object.assign(document.createElement("td"), { textContent: String(Math.round(epoch)) }));
    body.append(tr0);
    for (const [k, val] of Object.entries(values)) {
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { textContent: k }), Object.assign(document.createElement("td"), { textContent: fmt(val) }));
      body.append(tr);
    }
  }

  function renderTest(values) {
    const body = document.querySelector("#test-metrics-table tbody");
    if (!body) return;
    body.replaceChildren();
    for (const [k, val] of Object.entries(values)) {
      if (typeof val !== "number") continue;
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { textContent: k }), Object.assign(document.createElement("td"), { textContent: fmt(val) }));
      body.append(tr);
    }
    document.getElementById("test-card").hidden = false;
  }

  function fmtSeconds(s) {
    if (s == null || !Number.isFinite(s)) return "";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }

  let lastProgress = null;
  function onProgress(ev) {
    lastProgress = ev;
    const bar = document.getElementById("job-progress");
    bar.value = ev.total_steps ? ev.step / ev.total_steps : 0;
    let text = "epoch " + ev.epoch + "/" + ev.epochs + " · step " + ev.step + "/" + ev.total_steps;
    if (ev.eta_seconds != null && !FINAL.includes(status)) text += " · ETA " + fmtSeconds(ev.eta_seconds);
    document.getElementById("job-progress-text").textContent = text;
  }

  function tickDuration() {
    const el = document.getElementById("job-duration");
    if (!startedAt) return;
    const end = finishedAt || Date.now();
    el.textContent = (finishedAt ? "ran " : "running for ") + fmtSeconds((end - startedAt) / 1000);
  }
  setInterval(() => { if (!finishedAt) tickDuration(); }, 1000);
  tickDuration();

  function onStatus(ev, live) {
    status = ev.status;
    const badge = document.getElementById("job-status");
    badge.textContent = status.charAt(0).toUpperCase() + status.slice(1) + (ev.lost ? " (worker lost)" : "");
    badge.className = "badge " + status;
    if (ev.lost) document.getElementById("job-worker").textContent = "lost by worker " + ev.lost;
    if (ev.worker) document.getElementById("job-worker").textContent = "worker " + ev.worker;
    if (ev.warnings && ev.warnings.length) {  // the run's warnings about its model (a collapsed classifier...)
      const list = document.getElementById("job-warnings");
      list.replaceChildren(...ev.warnings.map((w) => { const li = document.createElement("li"); li.textContent = w.text; return li; }));
      document.getElementById("warnings-card").hidden = false;
    }
    if (status === "running" && !startedAt) {
      startedAt = ev.t ? ev.t * 1000 : Date.now();
      tickDuration();  // at once, not at the next second's tick
    }
    const queued = document.getElementById("queue-position");
    if (queued && status !== "queued") queued.hidden = true;
    if (ev.error) {
      const e = document.getElementById("job-error");
      e.textContent = ev.error; e.hidden = false;
    }
    const final = FINAL.includes(status);
    document.getElementById("cancel-form").hidden = final;
    document.getElementById("delete-form").hidden = !final;
    const retry = document.getElementById("retry-form");
    if (retry) retry.hidden = status !== "failed";
    const mlflow = document.getElementById("mlflow-form");  // an MLflow push needs an ended job
    if (mlflow) { mlflow.hidden = !final; document.getElementById("mlflow-wait").hidden = final; }
    if (final) {
      if (!finishedAt) finishedAt = live || !job.finished_at ? Date.now() : Date.parse(job.finished_at);
      tickDuration();
      if (lastProgress) onProgress(lastProgress); // drop the ETA
      if (live) setConn("finished");
    }
    if (final && live) loadOutputs();
  }

  function el(tag, props, ...children) {
    const e = Object.assign(document.createElement(tag), props || {});
    e.append(...children.filter((c) => c !== null && c !== undefined));
    return e;
  }

  // The sample gallery: image thumbnails, texts or generated text, replaced each epoch.
  function onSamples(ev) {
    const box = document.getElementById("samples");
    const items = ev.items || [];
    document.getElementById("samples-epoch").textContent = ev.epoch ? "· epoch " + ev.epoch : "";
    box.replaceChildren();
    if (!items.length) { box.append(el("p", { className: "muted", textContent: "This model gives no samples." })); return; }
    const images = items.some((s) => s.image);
    box.className = "samples " + (images ? "gallery" : "list");
    for (const s of items) {
      const card = el("figure", { className: "sample-item" + (s.correct === false ? " wrong" : s.correct === true ? " right" : "") });
      if (s.generated !== undefined) {
        card.classList.add("generated-item");
        card.append(el("figcaption", { textContent: s.item || "sample" }),
                    el("pre", { className: "generated" }, el("span", { className: "prompt", textContent: s.prompt || "" }),
                       el("span", { className: "completion", textContent: s.generated })));
        if (s.reference !== undefined) card.append(el("p", { className: "reference muted small", textContent: "reference answer: " + s.reference }));
      } else {
        if (s.image) card.append(el("img", { src: s.image, alt: s.item, className: "sample", width: 64, height: 64 }));
        else card.append(el("blockquote", { className: "sample-text", textContent: String(s.item) }));
        const conf = s.confidence == null ? "" : " (" + (100 * s.confidence).toFixed(1) + "%)";
        const verdict = s.correct === false ? "✗ " : s.correct === true ? "✓ " : "";
        card.append(el("figcaption", null,
          el("span", { className: "prediction", textContent: verdict + "predicted " + fmtValue(s.prediction) + conf }),
          el("br"), el("span", { className: "truth muted", textContent: "truth " + fmtValue(s.truth) })));
      }
      box.append(card);
    }
  }
  function fmtValue(v) { return typeof v === "number" ? fmt(v) : String(v); }

  function onConfusion(ev) {
    const classes = job.class_names || [];
    const m = ev.matrix || [];
    const max = Math.max(1, ...m.flat());
    const table = document.getElementById("confusion");
    table.replaceChildren();
    const head = document.createElement("tr");
    head.append(el("th", { textContent: "truth \\ predicted", scope: "col" }));
    m.forEach((_, j) => head.append(el("th", { textContent: classes[j] ?? j, scope: "col" })));
    table.append(head);
    m.forEach((row, i) => {
      const tr = document.createElement("tr");
      tr.append(el("th", { textContent: classes[i] ?? i, scope: "row" }));
      row.forEach((n, j) => {
        const td = el("td", { textContent: n, className: i === j ? "diag" : "off", title: (classes[i] ?? i) + " predicted as " + (classes[j] ?? j) + ": " + n });
        td.style.setProperty("--heat", (n / max).toFixed(3)); // CSSOM, allowed by the CSP
        tr.append(td);
      });
      table.append(tr);
    });
    document.getElementById("confusion-card").hidden = false;
  }

  const logBox = document.getElementById("log");
  const follow = document.getElementById("log-follow");
  function onLog(ev) {
    const li = el("li", { className: "log-" + (ev.level || "info") });
    if (ev.level && ev.level !== "info") li.append(el("span", { className: "lvl", textContent: ev.level + " " }));
    li.append(ev.text);
    logBox.append(li);
    while (logBox.childElementCount > MAX_LOG_LINES) logBox.firstElementChild.remove();
    if (follow.checked) logBox.scrollTop = logBox.scrollHeight;
  }

  function dispatch(ev, live) {
    switch (ev.kind) {
      case "metric": onMetric(ev); break;
      case "progress": onProgress(ev); break;
      case "status": onStatus(ev, live); break;
      case "samples": onSamples(ev); break;
      case "log": onLog(ev); break;
      case "confusion": onConfusion(ev); break;
      case "resources": onResources(ev); break;
    }
  }

  // -- resource use: the worker's samples of the job's processes, against wall time ------------
  const usage = { cpu: [], gpu_util: [], rss: [], gpu_memory: [] };
  let usageSamples = 0;
  const GiB = 1024 * 1024 * 1024;
  function makeUsageChart(canvasId, unit) {
    if (typeof Chart === "undefined" || !document.getElementById(canvasId)) return null;
    return new Chart(document.getElementById(canvasId), {
      type: "line", data: { datasets: [] },
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "wall time", color: textColor }, grid: { color: gridColor },
               ticks: { color: textColor, maxTicksLimit: 8, callback: (v, i, ticks) => K.durationLabels(ticks.map((t) => t.value))[i] } },
          y: { type: "linear", beginAtZero: true, title: { display: true, text: unit, color: textColor }, grid: { color: gridColor },
               ticks: { color: textColor, maxTicksLimit: 6, callback: yTick } },
        },
        plugins: { legend: { position: "bottom", labels: { color: textColor } },
                   tooltip: { callbacks: { title: (items) => items.length ? K.formatDuration(items[0].parsed.x, 0) : "",
                                           label: (item) => item.dataset.label + ": " + fmt(item.parsed.y) } } },
        elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1.5 } },
      },
    });
  }
  const usageCharts = { cpu: makeUsageChart("chart-cpu", "%"), memory: makeUsageChart("chart-memory", "GiB") };
  function onResources(ev) {
    if (typeof ev.t !== "number") return;
    const at = ev.t;
    if (typeof ev.cpu_percent === "number") usage.cpu.push({ t: at, y: ev.cpu_percent });
    if (typeof ev.gpu_util === "number") usage.gpu_util.push({ t: at, y: ev.gpu_util });
    if (typeof ev.rss === "number") usage.rss.push({ t: at, y: ev.rss / GiB });
    if (typeof ev.gpu_memory === "number") usage.gpu_memory.push({ t: at, y: ev.gpu_memory / GiB });
    usageSamples += 1;
    const latest = document.getElementById("resources-latest");
    if (latest) {
      latest.textContent = "now: CPU " + fmt(ev.cpu_percent) + " % (" + ev.processes + " process" + (ev.processes === 1 ? "" : "es") +
        ", 100 % = one of " + ev.cpus + " cores) · memory " + fmt(ev.rss / GiB) + " GiB" +
        (typeof ev.gpu_memory === "number" ? " · GPU memory " + fmt(ev.gpu_memory / GiB) + " GiB" + (ev.gpu_source === "device" ? " (whole device)" : "") : "") +
        (typeof ev.gpu_util === "number" ? " · GPU " + fmt(ev.gpu_util) + " %" : "");
    }
    redrawUsage();
  }
  let usagePending = false;
  function redrawUsage() {
    if (usagePending) return;
    usagePending = true;
    requestAnimationFrame(() => {
      usagePending = false;
      const origin = t0();
      const line = (label, data, colour) => ({ label: label, data: data.map((p) => ({ x: p.t - origin, y: p.y })),
                                               borderColor: colour, backgroundColor: colour });
      const sets = {
        cpu: [line("CPU %", usage.cpu, colors.train), ...(usage.gpu_util.length ? [line("GPU utilisation %", usage.gpu_util, colors.val)] : [])],
        memory: [line("RAM (RSS)", usage.rss, colors.train), ...(usage.gpu_memory.length ? [line("GPU memory", usage.gpu_memory, colors.val)] : [])],
      };
      for (const [name, datasets] of Object.entries(sets)) {
        const figure = document.getElementById("figure-" + name);
        if (figure) figure.dataset.empty = usageSamples ? "false" : "true";
        const chart = usageCharts[name];
        if (!chart) continue;
        chart.data.datasets = datasets;
        chart.update("none");
      }
      const card = document.getElementById("resources-card");
      if (card) card.dataset.samples = String(usageSamples);
    });
  }

  function apply(ev) {
    if (ev.seq <= lastSeq) return true; // already applied
    if (ev.seq !== lastSeq + 1) return false; // gap: re-sync first
    lastSeq = ev.seq;
    page.dataset.lastSeq = String(lastSeq);
    dispatch(ev, true);
    return true;
  }

  function applyAll(events) {
    events.sort((a, b) => a.seq - b.seq);
    for (const ev of events) {
      if (!apply(ev)) { resync(); return; }
    }
  }

  // The history snapshot: a subset of the stored events up to body.last_seq (all of them when
  // the job is small), applied in order; everything after it comes exactly, one by one.
  async function loadHistory() {
    const r = await fetch(page.dataset.eventsUrl + "?history=1&points=" + HISTORY_POINTS, { credentials: "same-origin" });
    if (!r.ok) throw new Error("history: HTTP " + r.status);
    const body = await r.json();
    const omittedLogs = (body.omitted || {}).log;
    if (omittedLogs) onLog({ level: "info", text: "(" + omittedLogs + " earlier lines not shown)" });
    for (const ev of body.events) dispatch(ev, false);
    lastSeq = body.last_seq;
    page.dataset.lastSeq = String(lastSeq);
    if (FINAL.includes(status) && !FINAL.includes(job.status)) loadOutputs(); // finished since the page was rendered
    if (body.downsampled) {
      const note = document.getElementById("history-note");
      note.textContent = "History of " + body.metric_events.toLocaleString("en") + " points: drawing " + points.toLocaleString("en") + " of them, chosen to keep each curve's shape; new points are exact.";
      note.hidden = false;
      document.getElementById("charts").dataset.downsampled = "true";
    }
    redraw();
  }

  async function fetchAfter() {
    // Page through the stored events until we have them all.
    for (;;) {
      const r = await fetch(page.dataset.eventsUrl + "?after=" + lastSeq, { credentials: "same-origin" });
      if (!r.ok) throw new Error("events: HTTP " + r.status);
      const body = await r.json();
      applyAll(body.events);
      if (!body.events.length || lastSeq >= body.last_seq) return;
    }
  }

  async function resync() {
    if (resyncing) return;
    resyncing = true;
    try { await fetchAfter(); } catch (e) { console.warn(e); } finally { resyncing = false; }
  }

  // The job has ended: the server renders what it now offers (try the model, continue training,
  // ONNX export, the model files, a cancelled job's checkpoint) with the same access rules as the
  // page, and each [data-outputs] element is swapped for the new one with its id.
  let outputsLoading = null;
  function loadOutputs() {
    if (!outputsLoading) outputsLoading = fetchOutputs().catch((e) => console.warn(e)).finally(() => { outputsLoading = null; });
    return outputsLoading;
  }
  async function fetchOutputs() {
    const [fragment, data] = await Promise.all([
      fetch(page.dataset.outputsUrl, { credentials: "same-origin" }).then((r) => (r.ok ? r.text() : null)),
      fetch(page.dataset.jobUrl, { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : null)),
    ]);
    if (data && data.finished_at) { finishedAt = Date.parse(data.finished_at); tickDuration(); }
    if (fragment !== null) {
      const doc = new DOMParser().parseFromString(fragment, "text/html");
      for (const fresh of doc.querySelectorAll("[data-outputs][id]")) {
        const old = document.getElementById(fresh.id);
        if (old) old.replaceWith(document.importNode(fresh, true));
      }
      page.dataset.outputs = "loaded";
    }
    document.dispatchEvent(new CustomEvent("trainyard:outputs", { detail: data }));
  }

  function setConn(text) { document.getElementById("conn-state").textContent = text; }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(scheme + location.host + page.dataset.wsPath);
    ws.onopen = () => {
      retries = 0;
      setConn("live");
      // Ask for everything after what we hold: covers events stored while we were away.
      ws.send(JSON.stringify({ after: lastSeq }));
    };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "events") applyAll(data.events);
      // A replay refused by the socket's rate limit: ask again when it says.
      else if (data.type === "error" && data.retry_after) {
        setTimeout(() => { if (ws.readyState === 1) ws.send(JSON.stringify({ after: lastSeq })); },
                   1000 * data.retry_after);
      }
    };
    ws.onclose = (e) => {
      if (e.code === 4401 || e.code === 4404) { setConn("not allowed"); return; }
      if (FINAL.includes(status)) { setConn("finished"); return; }
      const delay = Math.min(15000, 500 * 2 ** retries) * (0.75 + Math.random() / 2);
      retries += 1;
      setConn("reconnecting…");
      setTimeout(connect, delay);
    };
  }

  loadHistory().catch((e) => { console.warn(e); return resync(); }).then(() => {
    if (!FINAL.includes(status)) connect();
    else setConn("finished");
  });
})();
