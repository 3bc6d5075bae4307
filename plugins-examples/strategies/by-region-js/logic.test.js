import { test } from "node:test";
import assert from "node:assert/strict";

import { waves } from "./logic.js";

const NAMES = ["eu-west", "us-east", "ap-south"];
const REGIONS = [0, 1, 2, 0, 1, 0];
const ONLINE = [true, true, true, false, true, true];

test("regions go in the order given, then by name", () => {
  const planned = waves(REGIONS, NAMES, ONLINE, { order: ["us-east"] });
  assert.deepEqual(planned.map(([name]) => name), ["us-east", "ap-south", "eu-west"]);
  assert.deepEqual(planned[2][1], [0, 3, 5]);
});

test("offline devices are left out when asked", () => {
  const planned = new Map(waves(REGIONS, NAMES, ONLINE, { skipOffline: true }));
  assert.deepEqual(planned.get("eu-west"), [0, 5]);
});

test("a region no device is in is named", () => {
  assert.throws(() => waves(REGIONS, NAMES, ONLINE, { order: ["mars"] }), /mars/);
});
