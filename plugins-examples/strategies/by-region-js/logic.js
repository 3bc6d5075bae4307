// The planning of `by-region-js`: one wave per region, in the order the operator gives
// (`order`), regions left out of it last in name order; devices offline at planning time are
// left out when `skipOffline` is set.

// Waves as [region name, device indices], one per region that has devices.
export function waves(regions, regionNames, online, params) {
  for (const key of Object.keys(params)) {
    if (!["order", "skipOffline", "soakSeconds"].includes(key)) {
      throw new Error(`unknown parameter ${JSON.stringify(key)}`);
    }
  }
  const order = params.order ?? [];
  if (!Array.isArray(order) || !order.every((r) => typeof r === "string")) {
    throw new Error("order must be a list of region names");
  }
  const missing = order.find((r) => !regionNames.includes(r));
  if (missing !== undefined) {
    throw new Error(`order names ${JSON.stringify(missing)}, which no target device is in`);
  }
  const byRegion = new Map();
  regions.forEach((region, device) => {
    if (params.skipOffline && !online[device]) return;
    const name = regionNames[region];
    if (!byRegion.has(name)) byRegion.set(name, []);
    byRegion.get(name).push(device);
  });
  const rank = (name) => (order.includes(name) ? order.indexOf(name) : order.length);
  const names = [...byRegion.keys()].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  return names.map((name) => [name, byRegion.get(name)]);
}
