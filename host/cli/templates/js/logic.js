// The planning of `{{name}}`, kept apart from the WIT glue in app.js so that `npm test`
// (node --test) runs it with plain Node.js.

// The waves over `devices` devices, as arrays of device indices: `firstPercent` of the fleet
// first, then the rest. A bad parameter throws an Error naming it.
export function waves(devices, params) {
  for (const key of Object.keys(params)) {
    if (key !== "firstPercent" && key !== "soakSeconds") {
      throw new Error(`unknown parameter ${JSON.stringify(key)}`);
    }
  }
  const first = params.firstPercent ?? 10;
  if (!Number.isInteger(first) || first < 1 || first > 100) {
    throw new Error(`firstPercent is ${JSON.stringify(first)}: it must be 1 to 100`);
  }
  const n = Math.min(devices, Math.ceil((devices * first) / 100));
  const head = [];
  const rest = [];
  for (let i = 0; i < n; i++) head.push(i);
  for (let i = n; i < devices; i++) rest.push(i);
  return [head, rest].filter((w) => w.length > 0);
}
