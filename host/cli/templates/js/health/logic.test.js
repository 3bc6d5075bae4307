import { test } from "node:test";
import assert from "node:assert/strict";

import { decide } from "./logic.js";

test("a wave waits, then proceeds, and rolls back past the failure share", () => {
  assert.deepEqual(decide({}, 60, 0, undefined, 60, 0), { tag: "wait", val: 5 });
  assert.deepEqual(decide({}, 100, 0, 20, 60, 0), { tag: "wait", val: 40 });
  assert.deepEqual(decide({}, 100, 0, 60, 60, 0), { tag: "proceed" });
  const v = decide({ maxFailurePercent: 5 }, 810, 90, 10, 60, 0);
  assert.equal(v.tag, "roll-back");
  assert.match(v.val, /90 of 900/);
});

test("a bad parameter is named", () => {
  assert.throws(() => decide({ maxFailurePercent: 101 }, 1, 0, undefined, 0, 0), /maxFailurePercent/);
  assert.throws(() => decide({ pollSecs: 5 }, 1, 0, undefined, 0, 0), /pollSecs/);
});
