// `{{name}}`: a HotSwap health policy in JavaScript.
//
// componentize-js turns this module into a component of the `health-policy` world (wit/): its
// exports are the world's. The judging itself is in logic.js.
//
// Build: `hotswap plugin build`; try: `hotswap plugin simulate {{file}} --scenario scenario.json
// --server-config hotswap.toml`; test: `npm test`.
import { log } from "hotswap:plugin/log@0.1.0";

import { decide } from "./logic.js";

const SCHEMA = JSON.stringify({
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  properties: {
    maxFailurePercent: { type: "integer", minimum: 0, maximum: 100, default: 5, description: "the share of a wave's finished devices that may fail" },
    pollSeconds: { type: "integer", minimum: 1, default: 5, description: "seconds between two looks at a wave still in progress" },
  },
});

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    summary: "rolls back past maxFailurePercent failed or on any trap; waits out the soak",
    paramsSchema: SCHEMA,
  };
}

export function evaluate(params, stats, samples) {
  let verdict;
  try {
    const trapping = samples.filter((s) => s.traps > 0).length;
    verdict = decide(JSON.parse(params), stats.succeeded, stats.failed, stats.settledSeconds, stats.gate.soakSeconds, trapping);
  } catch (e) {
    // A thrown string is the `err` the operator sees.
    throw `{{name}} parameters: ${e.message}`;
  }
  if (verdict.tag === "roll-back") log("warn", verdict.val);
  return verdict;
}
