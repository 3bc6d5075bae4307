"""`{{name}}`: a HotSwap health policy in Python.

componentize-py turns this module into a component of the `health-policy` world (wit/): the
class `WitWorld` implements the world's exports. The judging itself is in logic.py.

Build: `hotswap plugin build`; try: `hotswap plugin simulate {{file}} --scenario scenario.json
--server-config hotswap.toml`; test: `python3 -m unittest`.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import health_types, types
from wit_world.imports.log import Level, log

from logic import decide

SCHEMA = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "maxFailurePercent": {"type": "integer", "minimum": 0, "maximum": 100, "default": 5,
                              "description": "the share of a wave's finished devices that may fail"},
        "pollSeconds": {"type": "integer", "minimum": 1, "default": 5,
                        "description": "seconds between two looks at a wave still in progress"},
    },
})


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Description:
        return types.Description(
            name="{{name}}",
            version="0.1.0",
            summary="rolls back past maxFailurePercent failed or on any trap; waits out the soak",
            params_schema=SCHEMA,
        )

    def evaluate(self, params: str, stats: health_types.WaveStats,
                 samples: list[health_types.HealthSample]) -> health_types.Verdict:
        try:
            p = json.loads(params)
            trapping = sum(1 for s in samples if s.traps > 0)
            kind, value = decide(p, stats.succeeded, stats.failed, stats.settled_seconds,
                                 stats.gate.soak_seconds, trapping)
        except ValueError as e:
            # An Err is the refusal the operator sees.
            raise Err(f"{{name}} parameters: {e}")
        if kind == "roll-back":
            log(Level.WARN, value)
            return health_types.Verdict_RollBack(value)
        if kind == "wait":
            return health_types.Verdict_Wait(value)
        return health_types.Verdict_Proceed()
