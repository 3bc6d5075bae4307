"""The planning of `{{name}}`, kept apart from the WIT glue in app.py so that
`python3 -m unittest` runs it with plain Python."""


def waves(devices, params):
    """The waves over `devices` devices, as lists of device indices: `firstPercent` of
    the fleet first, then the rest. A bad parameter raises ValueError naming it."""
    unknown = set(params) - {"firstPercent", "soakSeconds"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    first_percent = params.get("firstPercent", 10)
    if not isinstance(first_percent, int) or not 1 <= first_percent <= 100:
        raise ValueError(f"firstPercent is {first_percent!r}: it must be 1 to 100")
    first = min(devices, -(-devices * first_percent // 100))
    return [w for w in (list(range(first)), list(range(first, devices))) if w]
