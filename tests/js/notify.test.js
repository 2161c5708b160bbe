// The toasts' text: cut at a word boundary, never mid-word.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { shorten } = require("../../static/js/notify.js");

test("a long message is cut between words, with an ellipsis", () => {
  const text = "Job “big” failed: " + "the dataset could not be read because column temperature holds text ".repeat(4);
  const out = shorten(text, 160);
  assert.ok(out.length <= 160, out.length);
  assert.ok(out.endsWith("…"));
  const kept = out.slice(0, -1);
  assert.ok(text.startsWith(kept));
  assert.match(text.slice(kept.length), /^[\s,;:.]/); // the next character of the original ends a word
});

test("a short message is kept whole, and one long word is cut anyway", () => {
  assert.equal(shorten("Job “a” finished", 160), "Job “a” finished");
  assert.equal(shorten("x".repeat(200), 10), "x".repeat(9) + "…");
});
