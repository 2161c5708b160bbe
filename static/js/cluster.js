// Cluster page: workers by host with their devices' live memory / utilisation, the job on each,
// and the queue with its wait reasons. Drawn from the JSON the server embeds, then re-drawn from
// the same JSON endpoint every few seconds while the tab is visible (text only: no innerHTML).
(function () {
  "use strict";
  const root = document.getElementById("cluster-page");
  if (!root) return;
  const url = root.dataset.url;
  const poll = (Number(root.dataset.poll) || 3) * 1000;

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const gb = (n) => (n || n === 0 ? (n / 1e9).toFixed(1) : "?");
  function ago(s) {
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s ago";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  }
  function jobCell(job) {
    if (!job) return el("span", { class: "muted", text: "idle" });
    if (!job.visible) return el("span", { class: "muted", "data-hidden-job": "1", text: job.label + " · " + job.status });
    const parts = [el("a", { href: job.url, text: job.name, "data-job": job.id })];
    parts.push(" " + (job.mine ? "yours" : "by " + job.owner) + " · " + job.architecture + (job.dataset ? " on " + job.dataset : ""));
    if (job.status === "running" && job.epochs) parts.push(" · epoch " + job.epoch + "/" + job.epochs);
    return el("span", {}, ...parts);
  }
  function gpuRow(g) {
    const pct = g.memory_total && g.memory_used !== null ? Math.round((100 * g.memory_used) / g.memory_total) : 0;
    return el("li", { class: "gpu" },
      "#" + g.index + " " + (g.name || "GPU") + " ",
      el("progress", { max: "100", value: String(pct), "aria-label": "memory of GPU " + g.index }),
      " " + gb(g.memory_used) + " / " + gb(g.memory_total) + " GB · util " +
      (g.utilization === null ? "?" : g.utilization + "%") + (g.temperature === null ? "" : " · " + g.temperature + " °C"));
  }
  function usageText(u) {
    if (!u) return "";
    let text = "CPU " + Math.round(u.cpu_percent) + " % · RAM " + gb(u.rss) + " GB";
    if (u.gpu_memory !== null && u.gpu_memory !== undefined) text += " · GPU memory " + gb(u.gpu_memory) + " GB";
    if (u.gpu_util !== null && u.gpu_util !== undefined) text += " · GPU " + Math.round(u.gpu_util) + " %";
    return text;
  }
  function workerCard(w) {
    const devices = w.gpus.length ? el("ul", { class: "gpus" }, ...w.gpus.map(gpuRow))
      : el("p", { class: "muted", text: "CPU · " + w.devices + " device" + (w.devices === 1 ? "" : "s") });
    return el("div", { class: "card worker", "data-worker": w.name, "data-state": w.state },
      el("h3", {}, w.name + " ", el("span", { class: "badge " + w.state, text: w.state })),
      el("p", { class: "muted small" }, "heartbeat " + ago(w.heartbeat_age_seconds) + " · queues " + w.queues.join(", ")),
      devices,
      w.accepts_training || w.job
        ? el("p", { class: "worker-job" }, "Running: ", jobCell(w.job), w.job ? " (" + w.job.devices + " device" + (w.job.devices === 1 ? "" : "s") + ")" : "")
        : el("p", { class: "muted", text: "takes no training jobs" }),
      w.job && w.job.usage ? el("p", { class: "muted small", "data-usage": "1", text: "job's processes: " + usageText(w.job.usage) }) : null);
  }
  function render(state) {
    const hosts = document.getElementById("cluster-hosts");
    hosts.replaceChildren(...(state.hosts.length ? state.hosts.map((h) =>
      el("section", { class: "host", "data-host": h.hostname },
        el("h3", { class: "host-name", text: h.hostname + " · " + h.alive + " of " + h.workers.length + " worker" + (h.workers.length === 1 ? "" : "s") + " online" }),
        el("div", { class: "grid-2" }, ...h.workers.map(workerCard))))
      : [el("p", { class: "card muted", text: "No worker has registered yet: start one (README, \u201cAdding a worker\u201d)." })]));
    const body = document.querySelector("#cluster-queue tbody");
    body.replaceChildren(...(state.queue.length ? state.queue.map((q) =>
      el("tr", { "data-code": q.code },
        el("td", { text: String(q.position) }), el("td", {}, jobCell(q.job)),
        el("td", { text: String(q.job.devices) }),
        el("td", { text: q.reason + (q.worker ? " (" + q.worker + ")" : "") })))
      : [el("tr", { class: "empty" }, el("td", { colspan: "4", class: "muted", text: "Nothing is queued." }))]));
    const c = state.counts;
    document.getElementById("cluster-summary").textContent = c.alive + " of " + c.workers + " workers online · " +
      c.running + " running · " + c.queued + " queued";
    document.getElementById("cluster-updated").textContent = "Last update " + new Date(state.now).toLocaleTimeString() + ".";
  }
  render(JSON.parse(document.getElementById("cluster-data").textContent));
  async function refresh() {
    if (document.hidden) return;
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (r.ok) render(await r.json());
    } catch (e) { /* the next poll tries again */ }
  }
  setInterval(refresh, poll);
  document.addEventListener("visibilitychange", refresh);
})();
