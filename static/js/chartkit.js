// Pure helpers of the job page's charts (no DOM, no Chart.js): tick labels that differ from
// their neighbours, the x value of a point by step / epoch / wall time, zoom arithmetic, the
// nearest point of a sorted series and the CSV of a chart's metric history. Loaded as a plain
// script in the browser (window.ChartKit) and with require() by the Node unit tests.
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.ChartKit = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  function trim(s) {
    // "1.500" -> "1.5", "2.00e-3" -> "2e-3", "1e-3" stays; no trailing "." either.
    const [mant, exp] = s.split("e");
    const m = mant.includes(".") ? mant.replace(/0+$/, "").replace(/\.$/, "") : mant;
    return exp === undefined ? m : m + "e" + (exp.startsWith("+") ? exp.slice(1) : exp);
  }

  // One number with `digits` significant digits: scientific for very large or small magnitudes
  // (relative to the axis: `scale` is the largest magnitude among the ticks).
  function formatNumber(v, digits, scale) {
    if (v === 0) return "0";
    const big = scale === undefined ? Math.abs(v) : scale;
    if (big >= 1e5 || big < 1e-2) return trim(v.toExponential(Math.max(0, digits - 1)));
    const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(v))));
    return trim(v.toFixed(Math.min(20, decimals)));
  }

  // Labels for an axis' tick values: the fewest significant digits (from 2) at which no two
  // adjacent ticks read the same, so a narrow range such as a constant learning rate reads
  // 9.99e-4, 1e-3, 1.001e-3 rather than 1.0e-3 three times.
  function tickLabels(values) {
    const finite = values.filter((v) => Number.isFinite(v));
    const scale = Math.max(0, ...finite.map((v) => Math.abs(v)));
    values = values.map((v) => (Math.abs(v) < scale * 1e-12 ? 0 : v)); // float noise around zero
    let labels = values.map((v) => formatNumber(v, 2, scale));
    for (let digits = 2; digits <= 15; digits++) {
      labels = values.map((v) => formatNumber(v, digits, scale));
      if (labels.every((l, i) => i === 0 || l !== labels[i - 1])) break;
    }
    return labels;
  }

  // Elapsed wall time: "45s", "2m 05s", "1h 02m"; sub-second decimals only where needed to keep
  // adjacent ticks apart.
  function formatDuration(s, decimals) {
    const sign = s < 0 ? "-" : "";
    s = Math.abs(s);
    if (s < 60) return sign + s.toFixed(decimals || 0) + "s";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const secText = (decimals ? sec.toFixed(decimals) : String(Math.floor(sec))).padStart(decimals ? 3 + decimals : 2, "0");
    return sign + (h ? h + "h " + String(m).padStart(2, "0") + "m" + (sec >= 1 ? " " + secText + "s" : "") : m + "m " + secText + "s");
  }

  function durationLabels(values) {
    let labels = values.map((v) => formatDuration(v, 0));
    for (let d = 1; d <= 3 && !labels.every((l, i) => i === 0 || l !== labels[i - 1]); d++) {
      labels = values.map((v) => formatDuration(v, d));
    }
    return labels;
  }

  const AXES = {
    step: { title: "step", of: (p) => p.step },
    epoch: { title: "epoch", of: (p) => p.epoch },
    time: { title: "wall time since the start", of: (p, t0) => p.t - t0 },
  };

  // The x of a point ({step, epoch, t, y}) on an axis; null where the point lacks it.
  function xOf(point, axis, t0) {
    const x = (AXES[axis] || AXES.step).of(point, t0 || 0);
    return typeof x === "number" && Number.isFinite(x) ? x : null;
  }

  // Zoom the range [min, max] by `factor` (< 1 zooms in) around `center`, kept inside `bounds`.
  function zoomRange(min, max, center, factor, bounds) {
    let lo = center - (center - min) * factor;
    let hi = center + (max - center) * factor;
    if (bounds) {
      const width = Math.min(hi - lo, bounds.max - bounds.min);
      if (lo < bounds.min) { lo = bounds.min; hi = lo + width; }
      if (hi > bounds.max) { hi = bounds.max; lo = hi - width; }
    }
    return { min: lo, max: hi };
  }

  // Shift [min, max] by `delta`, kept inside `bounds`.
  function panRange(min, max, delta, bounds) {
    const width = max - min;
    let lo = min + delta;
    if (bounds) lo = Math.min(Math.max(lo, bounds.min), Math.max(bounds.min, bounds.max - width));
    return { min: lo, max: lo + width };
  }

  // Index of the element of ascending `xs` nearest to `x` (-1 for an empty array).
  function nearestIndex(xs, x) {
    if (!xs.length) return -1;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x) ? lo - 1 : lo;
  }

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // The CSV of one chart: every stored metric event (as /api/jobs/<id>/events/ returns them)
  // of the train and validation splits with a number for `key`, in event order, the values as
  // stored (String() of a double is its shortest exact form, as Python's repr).
  function metricCSV(events, key) {
    const lines = ["seq,split,step,epoch,wall_time," + csvCell(key)];
    for (const ev of events) {
      if (ev.kind !== "metric" || (ev.split !== "train" && ev.split !== "val")) continue;
      const v = (ev.values || {})[key];
      if (typeof v !== "number" || !Number.isFinite(v)) continue;
      lines.push([ev.seq, ev.split, ev.step, ev.epoch, ev.t, v].map(csvCell).join(","));
    }
    return lines.join("\n") + "\n";
  }

  return { formatNumber, tickLabels, formatDuration, durationLabels, AXES, xOf, zoomRange, panRange, nearestIndex, metricCSV };
});
