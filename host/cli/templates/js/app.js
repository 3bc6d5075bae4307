// `{{name}}`: a HotSwap rollout strategy in JavaScript.
//
// componentize-js turns this module into a component of the `strategy` world (wit/): its
// exports are the world's. The planning itself is in logic.js.
//
// Build: `hotswap plugin build`; check: `hotswap plugin check {{file}} --server-config hotswap.toml`;
// test: `npm test`.
import { log } from "hotswap:plugin/log@0.1.0";

import { waves } from "./logic.js";

const SCHEMA = JSON.stringify({
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  properties: {
    firstPercent: { type: "integer", minimum: 1, maximum: 100, default: 10, description: "the share of the fleet in the first wave" },
    soakSeconds: { type: "integer", minimum: 0, default: 0, description: "seconds to watch each wave after it finished" },
  },
});

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    summary: "updates firstPercent of the fleet first, then the rest",
    paramsSchema: SCHEMA,
  };
}

export function plan(params, fleet) {
  let p;
  let planned;
  try {
    p = JSON.parse(params);
    planned = waves(fleet.idEnds.length, p);
  } catch (e) {
    // A thrown string is the `err` the operator sees.
    throw `{{name}} parameters: ${e.message}`;
  }
  log("info", `${planned.length} waves over ${fleet.idEnds.length} devices`);
  const gate = { soakSeconds: p.soakSeconds ?? 0, minSuccessPercent: 95, failureBudget: 0, minSample: 1 };
  const first = p.firstPercent ?? 10;
  return {
    waves: planned.map((devices, i) => ({
      name: i + 1 < planned.length ? `first ${first}%` : "the rest",
      devices,
      mode: "install",
      gate,
      maxInFlight: undefined,
    })),
  };
}
