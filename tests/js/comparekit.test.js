// node --test tests/js/ (also run by tests/test_js.py): the compare page's pure helpers.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const K = require("../../static/js/comparekit.js");

const minDistance = (colors) => {
  let m = Infinity;
  for (let i = 0; i < colors.length; i++) for (let j = 0; j < i; j++) m = Math.min(m, K.distance(colors[i], colors[j]));
  return m;
};

test("colours never repeat, at any count up to 200", () => {
  for (const n of [1, 2, 8, 9, 12, 20, 22, 50, 200]) {
    const colors = K.distinctColors(n);
    assert.equal(colors.length, n);
    assert.equal(new Set(colors).size, n, `repeated colour among ${n}`);
    for (const c of colors) assert.match(c, /^#[0-9a-f]{6}$/);
  }
});

test("up to 50 colours stay far apart (CIELAB distance)", () => {
  // 2.3 is a just-noticeable difference; neighbours on a chart need far more.
  assert.ok(minDistance(K.distinctColors(20)) >= 20, String(minDistance(K.distinctColors(20))));
  assert.ok(minDistance(K.distinctColors(50)) >= 15, String(minDistance(K.distinctColors(50))));
});

test("the first eight are the page's familiar palette, and the list is stable", () => {
  assert.deepEqual(K.distinctColors(8), K.BASE);
  assert.deepEqual(K.distinctColors(30).slice(0, 20), K.distinctColors(20));
  assert.deepEqual(K.distinctColors(0), []);
});

test("groups keep the order of first appearance", () => {
  assert.deepEqual(K.groupBy(["0.1", "0.01", "0.1", "0.01", "1"]),
    [{ label: "0.1", indices: [0, 2] }, { label: "0.01", indices: [1, 3] }, { label: "1", indices: [4] }]);
});

test("bands: mean and sample standard deviation across the curves at each x", () => {
  const b = K.bands([
    [{ x: 1, y: 1 }, { x: 2, y: 2 }, { x: 3, y: 5 }],
    [{ x: 1, y: 3 }, { x: 2, y: 4 }],
    [{ x: 1, y: 5 }, { x: 2, y: NaN }],
  ]);
  assert.deepEqual(b.map((p) => p.x), [1, 2, 3]);
  assert.equal(b[0].mean, 3);
  assert.equal(b[0].std, 2);  // values 1, 3, 5: sample variance 4
  assert.equal(b[0].n, 3);
  assert.equal(b[1].mean, 3);
  assert.ok(Math.abs(b[1].std - Math.SQRT2) < 1e-12);  // 2, 4 (NaN left out)
  assert.deepEqual(b[2], { x: 3, mean: 5, std: 0, n: 1 });  // one curve: no spread
  assert.deepEqual(K.bands([]), []);
});

test("a band's fill colour is the line's with an alpha", () => {
  assert.equal(K.withAlpha("#2563eb", 0.2), "rgba(37, 99, 235, 0.2)");
});
