// `by-region-js`: an example HotSwap strategy in JavaScript, one wave per region.
//
// Build it with `npm install` then `hotswap plugin build` (componentize-js), check it with
// `hotswap plugin check dist/by-region-js.wasm --server-config hotswap.toml`; `npm test` tests
// its logic.
import { waves } from "./logic.js";

const SCHEMA = JSON.stringify({
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  properties: {
    order: { type: "array", items: { type: "string" }, default: [], description: "regions first, in this order; the others follow by name" },
    skipOffline: { type: "boolean", default: false, description: "leave out devices offline when the plan is made" },
    soakSeconds: { type: "integer", minimum: 0, default: 0 },
  },
});

export function describe() {
  return { name: "by-region-js", version: "1.0.0", summary: "one wave per region, in the order given", paramsSchema: SCHEMA };
}

export function plan(params, fleet) {
  let p;
  let planned;
  try {
    p = JSON.parse(params);
    planned = waves([...fleet.region], fleet.regions, [...fleet.online], p);
  } catch (e) {
    throw `by-region-js parameters: ${e.message}`;
  }
  const gate = { soakSeconds: p.soakSeconds ?? 0, minSuccessPercent: 95, failureBudget: 0, minSample: 1 };
  return {
    waves: planned.map(([name, devices]) => ({ name: `region ${name}`, devices, mode: "install", gate, maxInFlight: undefined })),
  };
}
