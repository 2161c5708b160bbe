// node --test tests/js/ (also run by tests/test_js.py): the job page charts' pure helpers.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const K = require("../../static/js/chartkit.js");

const distinctNeighbours = (labels) => labels.every((l, i) => i === 0 || l !== labels[i - 1]);

test("a constant learning rate's ticks do not repeat", () => {
  // Chart.js pads a flat series of 1e-3 into a narrow range like this one.
  const ticks = [0.00099, 0.000992, 0.000994, 0.000996, 0.000998, 0.001, 0.001002, 0.001004, 0.001006, 0.001008, 0.00101];
  const labels = K.tickLabels(ticks);
  assert.ok(distinctNeighbours(labels), labels.join(", "));
  assert.equal(labels[5], "1e-3");
  assert.equal(labels[0], "9.9e-4");
  assert.equal(labels[1], "9.92e-4");
});

test("ordinary ticks stay short", () => {
  assert.deepEqual(K.tickLabels([0, 0.2, 0.4, 0.6, 0.8, 1]), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
  assert.deepEqual(K.tickLabels([0, 500, 1000, 1500]), ["0", "500", "1000", "1500"]);
  assert.deepEqual(K.tickLabels([0, 2e5, 4e5]), ["0", "2e5", "4e5"]);
  assert.deepEqual(K.tickLabels([0.5, 0.50001, 0.50002]), ["0.5", "0.50001", "0.50002"]);
  assert.deepEqual(K.tickLabels([-1e-17, 0.5, 1]), ["0", "0.5", "1"]);
  assert.deepEqual(K.tickLabels([0.001, 0.002, 0.003]), ["1e-3", "2e-3", "3e-3"]);
});

test("log-scale ticks of a learning-rate decay are distinct", () => {
  const ticks = [1e-5, 2e-5, 3e-5, 5e-5, 1e-4, 2e-4, 1e-3];
  assert.ok(distinctNeighbours(K.tickLabels(ticks)));
});

test("durations read as elapsed time, with decimals only when needed", () => {
  assert.equal(K.formatDuration(45, 0), "45s");
  assert.equal(K.formatDuration(125, 0), "2m 05s");
  assert.equal(K.formatDuration(3725, 0), "1h 02m 05s");
  assert.equal(K.formatDuration(3600, 0), "1h 00m");
  assert.deepEqual(K.durationLabels([0, 10, 20]), ["0s", "10s", "20s"]);
  assert.deepEqual(K.durationLabels([1.2, 1.4, 1.6]), ["1.2s", "1.4s", "1.6s"]);
});

test("x by step, epoch or wall time since the start", () => {
  const p = { step: 40, epoch: 2.5, t: 1000.5, y: 1 };
  assert.equal(K.xOf(p, "step"), 40);
  assert.equal(K.xOf(p, "epoch"), 2.5);
  assert.equal(K.xOf(p, "time", 1000), 0.5);
  assert.equal(K.xOf({ step: 1, y: 1 }, "time", 0), null);
});

test("zoom around a point and pan stay inside the data", () => {
  assert.deepEqual(K.zoomRange(0, 100, 50, 0.5), { min: 25, max: 75 });
  assert.deepEqual(K.zoomRange(0, 100, 0, 0.5), { min: 0, max: 50 });
  assert.deepEqual(K.zoomRange(20, 60, 50, 4, { min: 0, max: 100 }), { min: 0, max: 100 });
  assert.deepEqual(K.panRange(0, 50, 30, { min: 0, max: 100 }), { min: 30, max: 80 });
  assert.deepEqual(K.panRange(0, 50, 80, { min: 0, max: 100 }), { min: 50, max: 100 });
  assert.deepEqual(K.panRange(10, 60, -30, { min: 0, max: 100 }), { min: 0, max: 50 });
});

test("nearest point of a sorted series", () => {
  const xs = [0, 10, 20, 30];
  assert.equal(K.nearestIndex(xs, -5), 0);
  assert.equal(K.nearestIndex(xs, 14), 1);
  assert.equal(K.nearestIndex(xs, 16), 2);
  assert.equal(K.nearestIndex(xs, 99), 3);
  assert.equal(K.nearestIndex([], 1), -1);
});

test("a chart's CSV holds every train and validation event with its value, exactly", () => {
  const events = [
    { kind: "status", seq: 1, status: "running" },
    { kind: "metric", seq: 2, split: "train", step: 1, epoch: 0.1, t: 1700000000.123, values: { loss: 0.1 + 0.2, lr: 0.001 } },
    { kind: "metric", seq: 3, split: "val", step: 10, epoch: 1, t: 1700000001.5, values: { loss: 0.25, accuracy: 0.9 } },
    { kind: "metric", seq: 4, split: "test", step: 10, epoch: 1, t: 1700000002, values: { loss: 0.3 } },
    { kind: "metric", seq: 5, split: "train", step: 11, epoch: 1.1, t: 1700000003, values: { accuracy: 0.8 } },
  ];
  assert.equal(K.metricCSV(events, "loss"),
    "seq,split,step,epoch,wall_time,loss\n2,train,1,0.1,1700000000.123,0.30000000000000004\n3,val,10,1,1700000001.5,0.25\n");
  assert.equal(K.metricCSV(events, "lr"), "seq,split,step,epoch,wall_time,lr\n2,train,1,0.1,1700000000.123,0.001\n");
});
