// Job page: history from the API, then live events over the job's websocket.
// Events are numbered per job; the page applies each number once, in order, and re-syncs
// from the server whenever it sees a gap or reconnects.
(function () {
  "use strict";
  const page = document.getElementById("job-page");
  if (!page) return;
  const job = JSON.parse(document.getElementById("job-data").textContent);
  const FINAL = ["succeeded", "failed", "cancelled"];
  let lastSeq = 0;
  let status = job.status;
  let points = 0;
  let ws = null;
  let retries = 0;
  let resyncing = false;

  const css = getComputedStyle(document.documentElement);
  const colors = { train: css.getPropertyValue("--train").trim() || "#2563eb", val: css.getPropertyValue("--val").trim() || "#dc2626" };

  function makeChart(canvasId) {
    if (typeof Chart === "undefined") return null;
    return new Chart(document.getElementById(canvasId), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false, parsing: false, normalized: true, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "nearest", intersect: false },
        scales: { x: { type: "linear", title: { display: true, text: "step" } }, y: { type: "linear" } },
        plugins: { decimation: { enabled: true, algorithm: "lttb", samples: 500 }, legend: { position: "bottom" } },
        elements: { point: { radius: 0 }, line: { borderWidth: 2 } },
      },
    });
  }
  const charts = { loss: makeChart("chart-loss"), metric: makeChart("chart-metric") };
  let secondary = null; // the chart's second metric, chosen from the first metric event

  function series(chart, label, color) {
    let ds = chart.data.datasets.find((d) => d.label === label);
    if (!ds) {
      ds = { label: label, data: [], borderColor: color, backgroundColor: color };
      chart.data.datasets.push(ds);
    }
    return ds;
  }

  let redrawPending = false;
  function redraw() {
    if (redrawPending) return;
    redrawPending = true;
    requestAnimationFrame(() => {
      redrawPending = false;
      for (const c of Object.values(charts)) if (c) c.update("none");
      document.getElementById("charts").dataset.points = String(points);
    });
  }

  function onMetric(ev) {
    const v = ev.values || {};
    if (!secondary) {
      secondary = "accuracy" in v ? "accuracy" : ("r2" in v ? "r2" : null);
      if (secondary) document.getElementById("metric-caption").textContent = secondary === "r2" ? "R²" : "Accuracy";
    }
    if (charts.loss && typeof v.loss === "number") series(charts.loss, ev.split + " loss", colors[ev.split]).data.push({ x: ev.step, y: v.loss });
    if (charts.metric && secondary && typeof v[secondary] === "number") series(charts.metric, ev.split + " " + secondary, colors[ev.split]).data.push({ x: ev.step, y: v[secondary] });
    points += 1;
    if (ev.split === "val") renderMetrics(v);
    redraw();
  }

  function renderMetrics(values) {
    const body = document.querySelector("#metrics-table tbody");
    body.replaceChildren();
    for (const [k, val] of Object.entries(values)) {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.textContent = k;
      const td = document.createElement("td"); td.textContent = typeof val === "number" ? val.toPrecision(4) : String(val);
      tr.append(th, td); body.append(tr);
    }
  }

  function fmtSeconds(s) {
    if (s == null) return "";
    s = Math.round(s);
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

  function onStatus(ev) {
    status = ev.status;
    const badge = document.getElementById("job-status");
    badge.textContent = status.charAt(0).toUpperCase() + status.slice(1);
    badge.className = "badge " + status;
    if (ev.worker) document.getElementById("job-worker").textContent = "worker " + ev.worker;
    const queued = document.getElementById("queue-position");
    if (queued && status !== "queued") queued.hidden = true;
    if (ev.error) {
      const e = document.getElementById("job-error");
      e.textContent = ev.error; e.hidden = false;
    }
    const final = FINAL.includes(status);
    document.getElementById("cancel-form").hidden = final;
    document.getElementById("delete-form").hidden = !final;
    if (final && lastProgress) onProgress(lastProgress); // drop the ETA
    if (status === "succeeded") loadArtifacts();
  }

  function onSamples(ev) {
    const body = document.querySelector("#samples tbody");
    body.replaceChildren();
    for (const s of ev.items || []) {
      const tr = document.createElement("tr");
      if (s.correct === false) tr.className = "wrong";
      const item = document.createElement("td");
      if (s.image) {
        const img = document.createElement("img");
        img.src = s.image; img.alt = s.item; img.className = "sample";
        item.append(img);
      } else {
        item.textContent = s.prompt !== undefined ? s.prompt : String(s.item);
      }
      tr.append(item);
      const cells = s.generated !== undefined ? [s.generated, "", ""]
        : [s.prediction, s.confidence == null ? "" : (100 * s.confidence).toFixed(1) + "%", s.truth];
      for (const val of cells) {
        const td = document.createElement("td"); td.textContent = String(val); tr.append(td);
      }
      if (s.generated !== undefined) tr.firstChild.nextSibling.className = "generated";
      body.append(tr);
    }
  }

  function onConfusion(ev) {
    const classes = job.class_names || [];
    const m = ev.matrix || [];
    const max = Math.max(1, ...m.flat());
    const table = document.getElementById("confusion");
    table.replaceChildren();
    const head = document.createElement("tr");
    head.append(Object.assign(document.createElement("th"), { textContent: "truth \\ predicted" }));
    m.forEach((_, j) => head.append(Object.assign(document.createElement("th"), { textContent: classes[j] ?? j })));
    table.append(head);
    m.forEach((row, i) => {
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { textContent: classes[i] ?? i }));
      row.forEach((n, j) => {
        const td = document.createElement("td");
        td.textContent = n;
        td.className = i === j ? "diag" : "off";
        td.style.setProperty("--heat", (n / max).toFixed(3)); // CSSOM, allowed by the CSP
        tr.append(td);
      });
      table.append(tr);
    });
    document.getElementById("confusion-card").hidden = false;
  }

  function onLog(ev) {
    const li = document.createElement("li");
    li.className = "log-" + (ev.level || "info");
    li.textContent = ev.text;
    document.getElementById("log").append(li);
  }

  function apply(ev) {
    if (ev.seq <= lastSeq) return true; // already applied
    if (ev.seq !== lastSeq + 1) return false; // gap: re-sync first
    lastSeq = ev.seq;
    page.dataset.lastSeq = String(lastSeq);
    switch (ev.kind) {
      case "metric": onMetric(ev); break;
      case "progress": onProgress(ev); break;
      case "status": onStatus(ev); break;
      case "samples": onSamples(ev); break;
      case "log": onLog(ev); break;
      case "confusion": onConfusion(ev); break;
    }
    return true;
  }

  function applyAll(events) {
    events.sort((a, b) => a.seq - b.seq);
    for (const ev of events) {
      if (!apply(ev)) { resync(); return; }
    }
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
    const ul = document.getElementById("artifacts");
    ul.replaceChildren();
    for (const a of data.artifacts) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = page.dataset.artifactBase + encodeURIComponent(a.name);
      link.textContent = a.name;
      link.setAttribute("download", "");
      li.append(link, " ", Object.assign(document.createElement("span"), { className: "muted", textContent: (a.size_bytes / 1024).toFixed(1) + " KB" }));
      ul.append(li);
    }
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

  resync().then(() => {
    if (!FINAL.includes(status)) connect();
    else setConn("finished");
  });
})();
