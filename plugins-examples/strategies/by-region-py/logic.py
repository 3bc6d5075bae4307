"""The planning of `by-region-py`: one wave per region, in the order the operator gives
(`order`), regions left out of it last in name order; devices offline at planning time are
left out when `skipOffline` is set."""


def waves(regions, region_names, online, params):
    """Waves as (region name, device indices), one per region that has devices."""
    unknown = set(params) - {"order", "skipOffline", "soakSeconds"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    order = params.get("order", [])
    if not isinstance(order, list) or not all(isinstance(r, str) for r in order):
        raise ValueError("order must be a list of region names")
    missing = [r for r in order if r not in region_names]
    if missing:
        raise ValueError(f"order names {missing[0]!r}, which no target device is in")
    skip_offline = params.get("skipOffline", False)
    rank = {name: i for i, name in enumerate(order)}
    by_region = {}
    for device, region in enumerate(regions):
        if skip_offline and not online[device]:
            continue
        by_region.setdefault(region_names[region], []).append(device)
    names = sorted(by_region, key=lambda n: (rank.get(n, len(rank)), n))
    return [(name, by_region[name]) for name in names]
