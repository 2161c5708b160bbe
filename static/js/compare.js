// Compare page: overlay the validation curves of several jobs (history from the events API),
// each job in a colour of its own, or grouped by a setting: each group's mean curve with a
// band of ± one standard deviation across its jobs (CompareKit holds the arithmetic).
(function () {
  "use strict";
  const K = window.CompareKit;
  const data = JSON.parse(document.getElementById("compare-data").textContent);
  const jobs = data.jobs;
  const root = document.getElementById("compare-charts");
  const grouped = Boolean(data.group);
  const groups = grouped ? K.groupBy(jobs.map((j) => j.group)) : jobs.map((j, i) => ({ label: j.name, indices: [i] }));
  const colors = K.distinctColors(groups.length);
  const colorOfJob = new Array(jobs.length);
  groups.forEach((g, gi) => g.indices.forEach((i) => { colorOfJob[i] = colors[gi]; }));

  const chart = (id) => new Chart(document.getElementById(id), {
    type: "line", data: { datasets: [] },
    options: { animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
               scales: { x: { type: "linear", title: { display: true, text: "epoch" } } },
               elements: { point: { radius: 2 } },
               plugins: { legend: { position: "bottom", labels: { filter: (item, d) => !d.datasets[item.datasetIndex].band } } } },
  });
  const loss = chart("compare-loss"), metric = chart("compare-metric");
  let metricName = null;

  // The downsampled history (validation series are one point per epoch, so they come whole).
  async function events(id) {
    const r = await fetch(root.dataset.eventsBase + id + "/events/?history=1&points=2000", { credentials: "same-origin" });
    if (!r.ok) return [];
    return (await r.json()).events.filter((e) => e.kind === "metric" && e.split === "val");
  }

  // Swatches in the tables' headers match each job's colour (its group's when grouped).
  jobs.forEach((job, i) => {
    for (const sw of document.querySelectorAll('.swatch[data-index="' + i + '"]')) sw.style.setProperty("--swatch", colorOfJob[i]);
  });

  const seriesOf = (vals, name) => vals.filter((e) => typeof e.values[name] === "number").map((e) => ({ x: e.epoch, y: e.values[name] }));

  function addGroup(target, label, color, curves) {
    const band = K.bands(curves);
    const n = Math.max(0, ...band.map((b) => b.n));
    // Upper edge, then the lower edge filled up to it ("-1"), then the mean line on top.
    target.data.datasets.push({ label: label + " +1 std", band: true, borderWidth: 0, pointRadius: 0, fill: false,
                                borderColor: color, data: band.map((b) => ({ x: b.x, y: b.mean + b.std })) });
    target.data.datasets.push({ label: label + " -1 std", band: true, borderWidth: 0, pointRadius: 0, fill: "-1",
                                borderColor: color, backgroundColor: K.withAlpha(color, 0.18),
                                data: band.map((b) => ({ x: b.x, y: b.mean - b.std })) });
    target.data.datasets.push({ label: label + " (mean of " + n + ")", borderColor: color, backgroundColor: color,
                                data: band.map((b) => ({ x: b.x, y: b.mean })) });
  }

  // All histories first, then the curves in the table's order (stable legend and colours).
  Promise.all(jobs.map((job) => events(job.id))).then((all) => {
    let points = 0;
    for (const vals of all) {
      points += vals.length;
      if (!metricName && vals.length) {
        const v = vals[0].values;
        metricName = "accuracy" in v ? "accuracy" : ("r2" in v ? "r2" : ("perplexity" in v ? "perplexity" : null));
        if (metricName) document.getElementById("compare-metric-caption").textContent = "Validation " + (metricName === "r2" ? "R²" : metricName);
      }
    }
    groups.forEach((g, gi) => {
      const color = colors[gi];
      if (grouped) {
        const label = data.group + " = " + g.label;
        addGroup(loss, label, color, g.indices.map((i) => seriesOf(all[i], "loss")));
        if (metricName) addGroup(metric, label, color, g.indices.map((i) => seriesOf(all[i], metricName)));
      } else {
        const i = g.indices[0];
        loss.data.datasets.push({ label: jobs[i].name, borderColor: color, backgroundColor: color, data: seriesOf(all[i], "loss") });
        if (metricName) metric.data.datasets.push({ label: jobs[i].name, borderColor: color, backgroundColor: color,
                                                    data: seriesOf(all[i], metricName) });
      }
    });
    root.dataset.points = String(points);
    root.dataset.series = String(groups.length);
    loss.update("none"); metric.update("none");
    root.dataset.ready = "1";
  });
})();
