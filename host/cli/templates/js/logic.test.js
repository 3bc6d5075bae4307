import { test } from "node:test";
import assert from "node:assert/strict";

import { waves } from "./logic.js";

test("every device is planned once, the first wave first", () => {
  const planned = waves(1000, { firstPercent: 10 });
  assert.equal(planned.length, 2);
  assert.equal(planned[0].length, 100);
  const all = [...planned[0], ...planned[1]].sort((a, b) => a - b);
  assert.deepEqual(all, [...Array(1000).keys()]);
});

test("a bad parameter is named", () => {
  assert.throws(() => waves(10, { firstPercent: 0 }), /firstPercent/);
  assert.throws(() => waves(10, { firstPrecent: 5 }), /firstPrecent/);
});
