// Compare page: overlay the validation curves of several jobs (history from the events API).
(function () {
  "use strict";
  const jobs = JSON.parse(document.getElementById("compare-data").textContent);
  const root = document.getElementById("compare-charts");
  const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  const chart = (id) => new Chart(document.getElementById(id), {
    type: "line", data: { datasets: [] },
    options: { animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
               scales: { x: { type: "linear", title: { display: true, text: "epoch" } } },
               elements: { point: { radius: 2 } }, plugins: { legend: { position: "bottom" } } },
  });
  const loss = chart("compare-loss"), metric = chart("compare-metric");
  let points = 0, metricName = null;

  // The downsampled history (validation series are one point per epoch, so they come whole).
  async function events(id) {
    const r = await fetch(root.dataset.eventsBase + id + "/events/?history=1&points=2000", { credentials: "same-origin" });
    if (!r.ok) return [];
    return (await r.json()).events.filter((e) => e.kind === "metric" && e.split === "val");
  }

  // Swatches in the table's header match each job's colour on the charts.
  jobs.forEach((job, i) => {
    for (const sw of document.querySelectorAll('.swatch[data-index="' + i + '"]')) sw.style.setProperty("--swatch", palette[i % palette.length]);
  });

  // All histories first, then the curves in the table's order (stable legend and colours).
  Promise.all(jobs.map((job) => events(job.id))).then((all) => {
    all.forEach((vals, i) => {
      const job = jobs[i], color = palette[i % palette.length];
      if (!metricName && vals.length) {
        const v = vals[0].values;
        metricName = "accuracy" in v ? "accuracy" : ("r2" in v ? "r2" : ("perplexity" in v ? "perplexity" : null));
        if (metricName) document.getElementById("compare-metric-caption").textContent = "Validation " + (metricName === "r2" ? "R²" : metricName);
      }
      loss.data.datasets.push({ label: job.name, borderColor: color, backgroundColor: color,
                                data: vals.map((e) => ({ x: e.epoch, y: e.values.loss })) });
      if (metricName) metric.data.datasets.push({ label: job.name, borderColor: color, backgroundColor: color,
        data: vals.filter((e) => metricName in e.values).map((e) => ({ x: e.epoch, y: e.values[metricName] })) });
      points += vals.length;
    });
    root.dataset.points = String(points);
    loss.update("none"); metric.update("none");
  });
})();
