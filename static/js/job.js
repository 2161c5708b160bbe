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
  // Raw points per split and value name; a chart shows one value name for each split.
  const raw = { train: {}, val: {} };
  const smoothed = new Map(); // raw array -> {alpha, data, ema, n}
  let alpha = 0;
  let metricName = null;
  const chartKeys = { loss: () => "loss", metric: () => metricName, lr: () => "lr", speed: () => "samples_per_s" };

  function makeChart(canvasId) {
    if (typeof Chart === "undefined") return null;
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "step", color: textColor }, grid: { color: gridColor }, ticks: { color: textColor } },
          y: { type: "linear", grid: { color: gridColor }, ticks: { color: textColor, maxTicksLimit: 7, callback: tick } },
        },
        plugins: { decimation: { enabled: true, algorithm: "lttb", samples: 800 }, legend: { position: "bottom", labels: { color: textColor } } },
        elements: { point: { radius: 0, hitRadius: 4 }, line: { borderWidth: 1.5 } },
      },
    });
  }
  function tick(v) { return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2) ? Number(v).toExponential(1) : String(Number(Number(v).toPrecision(3))); }
  const charts = {};
  for (const name of Object.keys(chartKeys)) charts[name] = makeChart("chart-" + name);

  function series(split, key) {
    const bySplit = raw[split] || (raw[split] = {});
    return bySplit[key] || (bySplit[key] = []);
  }

  // Debiased exponential moving average (as TensorBoard does), computed incrementally.
  function display(split, key, data) {
    if (!alpha || split !== "train" || key === "lr") return data; // the schedule is exact, not noisy
    let s = smoothed.get(data);
    if (!s || s.alpha !== alpha) { s = { alpha: alpha, data: [], ema: 0, n: 0 }; smoothed.set(data, s); }
    for (let i = s.data.length; i < data.length; i++) {
      s.n += 1;
      s.ema = alpha * s.ema + (1 - alpha) * data[i].y;
      s.data.push({ x: data[i].x, y: s.ema / (1 - Math.pow(alpha, s.n)) });
    }
    return s.data;
  }

  function syncChart(name) {
    const chart = charts[name];
    if (!chart) return;
    const key = chartKeys[name]();
    const wanted = [];
    for (const split of ["train", "val"]) {
      const data = key && raw[split] && raw[split][key];
      if (data && data.length) wanted.push({ split: split, data: data });
    }
    chart.data.datasets = wanted.map((w) => {
      const label = w.split + " " + label_(key) + (alpha && w.split === "train" && key !== "lr" ? " (smoothed)" : "");
      return { label: label, data: display(w.split, key, w.data), borderColor: colors[w.split], backgroundColor: colors[w.split],
               pointRadius: w.split === "val" && w.data.length < 60 ? 2 : 0 };
    });
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

  // Controls: smoothing, the metric shown, log scales (all keyboard operable native inputs).
  const smoothing = document.getElementById("smoothing");
  smoothing.addEventListener("input", () => {
    alpha = Number(smoothing.value);
    smoothed.clear();
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
      if (typeof y === "number" && Number.isFinite(y)) series(split, k).push({ x: ev.step, y: y });
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
    if (status === "succeeded" && live) loadArtifacts();
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
    }
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
    if (FINAL.includes(status) && !FINAL.includes(job.status)) loadArtifacts(); // finished since the page was rendered
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

  async function loadArtifacts() {
    const r = await fetch(page.dataset.jobUrl, { credentials: "same-origin" });
    if (!r.ok) return;
    const data = await r.json();
    if (data.finished_at) { finishedAt = Date.parse(data.finished_at); tickDuration(); }
    const ul = document.getElementById("artifacts");
    ul.replaceChildren();
    for (const a of data.artifacts) {
      const link = el("a", { href: page.dataset.artifactBase + encodeURIComponent(a.name), textContent: a.name });
      link.setAttribute("download", "");
      ul.append(el("li", null, link, " ", el("span", { className: "muted", textContent: (a.size_bytes / 1024).toFixed(1) + " KB" })));
    }
    document.dispatchEvent(new CustomEvent("trainyard:artifacts", { detail: data }));
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
