"""The judging of `{{name}}`, kept apart from the WIT glue in app.py so that
`python3 -m unittest` runs it with plain Python."""


def decide(params, succeeded, failed, settled_seconds, soak_seconds, trapping):
    """What to do with a wave: ("roll-back", reason), ("wait", seconds) or ("proceed", None).
    A bad parameter raises ValueError naming it."""
    unknown = set(params) - {"maxFailurePercent", "pollSeconds"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    max_failure = params.get("maxFailurePercent", 5)
    if not isinstance(max_failure, int) or not 0 <= max_failure <= 100:
        raise ValueError(f"maxFailurePercent is {max_failure!r}: it must be 0 to 100")
    poll = params.get("pollSeconds", 5)
    if not isinstance(poll, int) or poll < 1:
        raise ValueError(f"pollSeconds is {poll!r}: it must be at least 1")
    finished = succeeded + failed
    if failed * 100 > max_failure * max(finished, 1):
        return "roll-back", f"{failed} of {finished} devices failed, more than {max_failure}%"
    if trapping > 0:
        return "roll-back", f"{trapping} devices report traps"
    if settled_seconds is None:
        return "wait", poll
    if settled_seconds < soak_seconds:
        return "wait", soak_seconds - settled_seconds
    return "proceed", None
