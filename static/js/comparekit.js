// Pure helpers of the compare page (no DOM, no Chart.js): n distinct colours, jobs grouped by a
// setting, and the mean ± standard deviation band of a group's curves. Loaded as a plain script
// in the browser (window.CompareKit) and with require() by the Node unit tests (tests/js/).
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.CompareKit = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // The first colours are the page's familiar ones; after them each colour is the candidate
  // farthest (CIELAB distance) from every colour already taken, so none repeats at any count.
  const BASE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function rgbToHex(rgb) {
    return "#" + rgb.map((c) => Math.round(c).toString(16).padStart(2, "0")).join("");
  }

  function hslToRgb(h, s, l) {
    const a = s * Math.min(l, 1 - l);
    const f = (n) => {
      const k = (n + h / 30) % 12;
      return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
    };
    return [f(0), f(8), f(4)];
  }

  // sRGB (0-255) to CIELAB (D65): distances there follow what the eye tells apart.
  function rgbToLab(rgb) {
    const lin = rgb.map((c) => { c /= 255; return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
    const x = (lin[0] * 0.4124 + lin[1] * 0.3576 + lin[2] * 0.1805) / 0.95047;
    const y = lin[0] * 0.2126 + lin[1] * 0.7152 + lin[2] * 0.0722;
    const z = (lin[0] * 0.0193 + lin[1] * 0.1192 + lin[2] * 0.9505) / 1.08883;
    const f = (t) => (t > 216 / 24389 ? Math.cbrt(t) : (24389 / 27 * t + 16) / 116);
    return [116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))];
  }

  function distance(hexA, hexB) {
    const a = rgbToLab(hexToRgb(hexA)), b = rgbToLab(hexToRgb(hexB));
    return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
  }

  let candidates = null;
  function pool() {
    if (!candidates) {
      candidates = [];
      // Mid lightness only: every colour reads on the light and the dark theme.
      for (const l of [0.32, 0.45, 0.58, 0.7]) {
        for (const s of [0.55, 0.9]) {
          for (let h = 0; h < 360; h += 6) candidates.push(rgbToHex(hslToRgb(h, s, l)));
        }
      }
    }
    return candidates;
  }

  // n colours as "#rrggbb", pairwise distinct; the same n always gives the same list.
  function distinctColors(n) {
    const out = BASE.slice(0, Math.max(0, n));
    const labs = out.map((c) => rgbToLab(hexToRgb(c)));
    const all = pool();
    const allLab = all.map((c) => rgbToLab(hexToRgb(c)));
    const nearest = allLab.map((p) => Math.min(Infinity, ...labs.map((q) => Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]))));
    while (out.length < n) {
      let best = -1;
      for (let i = 0; i < all.length; i++) if (best < 0 || nearest[i] > nearest[best]) best = i;
      if (best < 0 || nearest[best] === 0) break;  // the pool is spent (thousands of colours)
      out.push(all[best]);
      const q = allLab[best];
      for (let i = 0; i < all.length; i++) {
        const p = allLab[i];
        nearest[i] = Math.min(nearest[i], Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]));
      }
    }
    return out;
  }

  // "#rrggbb" with an alpha, for a band's fill.
  function withAlpha(hex, alpha) {
    const [r, g, b] = hexToRgb(hex);
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  // [{label, indices}] in order of first appearance; `labels[i]` is job i's value of the setting.
  function groupBy(labels) {
    const groups = new Map();
    labels.forEach((label, i) => {
      const key = String(label);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(i);
    });
    return Array.from(groups, ([label, indices]) => ({ label, indices }));
  }

  // The band of a group's curves: for each x any of them has, the mean of the curves' values
  // there, the standard deviation (sample, n - 1; 0 for one curve) and how many curves had it.
  // `series`: arrays of {x, y}; non-finite values are left out.
  function bands(series) {
    const at = new Map();
    for (const points of series) {
      for (const p of points) {
        if (typeof p.y !== "number" || !Number.isFinite(p.y) || typeof p.x !== "number") continue;
        if (!at.has(p.x)) at.set(p.x, []);
        at.get(p.x).push(p.y);
      }
    }
    return Array.from(at.keys()).sort((a, b) => a - b).map((x) => {
      const ys = at.get(x), n = ys.length;
      const mean = ys.reduce((s, y) => s + y, 0) / n;
      const std = n > 1 ? Math.sqrt(ys.reduce((s, y) => s + (y - mean) ** 2, 0) / (n - 1)) : 0;
      return { x, mean, std, n };
    });
  }

  return { distinctColors, distance, withAlpha, groupBy, bands, BASE };
});
