// The sweep page: the best-so-far curve (Chart.js, vendored) and parallel coordinates (plain SVG).
(function () {
  "use strict";
  const el = document.getElementById("sweep-data");
  if (!el) return;
  const data = JSON.parse(el.textContent);
  const sweep = data.sweep;

  // While the sweep runs, the page follows it: the API's trials are polled (every 2 s, only
  // while the tab is visible) and the page reloads when a trial arrives or changes state, so the
  // table, the curve, the parallel coordinates and the importances are redrawn from the server.
  const signature = (s) => s.status + "|" + s.trials.map((t) => `${t.number}:${t.state}:${t.job_status}`).join(",");
  const live = document.getElementById("sweep-live");
  if (sweep.status === "running" && live && live.dataset.url) {
    const seen = signature(sweep);
    const poll = async () => {
      if (!document.hidden) {
        try {
          const r = await fetch(live.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
          if (r.ok && signature(await r.json()) !== seen) { window.location.reload(); return; }
        } catch (e) { /* a dropped request: the next poll tries again */ }
      }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 2000);
  }

  const canvas = document.getElementById("best-chart");
  if (canvas && window.Chart && data.curve.length) {
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.curve.map((p) => p.number),
        datasets: [
          { label: "trial " + sweep.metric, data: data.curve.map((p) => p.value), showLine: false, pointRadius: 3 },
          { label: "best so far", data: data.curve.map((p) => p.best), stepped: true, pointRadius: 0 },
        ],
      },
      options: { animation: false, scales: { x: { title: { display: true, text: "trial" } } } },
    });
  } else if (canvas) {
    canvas.replaceWith(Object.assign(document.createElement("p"), { className: "muted", textContent: "No complete trial yet." }));
  }

  const box = document.getElementById("parallel");
  const keys = Object.keys(sweep.space);
  const done = sweep.trials.filter((t) => t.state === "complete" && t.value !== null);
  if (!box) return;
  if (!done.length) { box.textContent = "No complete trial yet."; return; }
  const axes = keys.concat([sweep.metric]);
  const W = Math.max(360, 140 * axes.length), H = 260, pad = 30;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 40}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `parallel coordinates of ${done.length} complete trial${done.length === 1 ? "" : "s"}: ` +
                   axes.join(", "));
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, axes.length - 1);
  // One scale per axis: numbers linear (log for a log range), choices evenly spaced.
  const scale = axes.map((k, i) => {
    const spec = sweep.space[k];
    const vals = done.map((t) => (i === axes.length - 1 ? t.value : t.params[k]));
    if (spec && spec.type === "choice") {
      const cs = spec.choices.map((c) => JSON.stringify(c));
      return (v) => H - pad - (cs.indexOf(JSON.stringify(v)) * (H - 2 * pad)) / Math.max(1, cs.length - 1);
    }
    const log = spec && spec.log;
    const f = (v) => (log ? Math.log(v) : v);
    const lo = spec ? f(spec.low) : Math.min(...vals.map(f)), hi = spec ? f(spec.high) : Math.max(...vals.map(f));
    return (v) => H - pad - ((f(v) - lo) / (hi - lo || 1)) * (H - 2 * pad);
  });
  const best = sweep.best ? sweep.best.number : null;
  const values = done.map((t) => t.value), vmin = Math.min(...values), vmax = Math.max(...values);
  axes.forEach((k, i) => {
    const line = document.createElementNS(NS, "line");
    Object.entries({ x1: x(i), x2: x(i), y1: pad, y2: H - pad, stroke: "#888" }).forEach(([a, v]) => line.setAttribute(a, v));
    svg.appendChild(line);
    const label = document.createElementNS(NS, "text");
    Object.entries({ x: x(i), y: H + 10, "text-anchor": "middle", "font-size": "12" }).forEach(([a, v]) => label.setAttribute(a, v));
    label.textContent = k;
    svg.appendChild(label);
  });
  done.forEach((t) => {
    const pts = axes.map((k, i) => `${x(i)},${scale[i](i === axes.length - 1 ? t.value : t.params[k])}`);
    const path = document.createElementNS(NS, "polyline");
    // Better trials are darker; the best one is drawn thick.
    let q = (t.value - vmin) / (vmax - vmin || 1);
    if (sweep.direction === "maximize") q = 1 - q;
    path.setAttribute("points", pts.join(" "));
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", `hsl(215, 70%, ${25 + 50 * q}%)`);
    path.setAttribute("stroke-width", t.number === best ? "3" : "1.2");
    const title = document.createElementNS(NS, "title");
    title.textContent = `trial ${t.number}: ${sweep.metric} ${t.value}`;
    path.appendChild(title);
    svg.appendChild(path);
  });
  box.appendChild(svg);
})();
