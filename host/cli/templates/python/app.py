"""`{{name}}`: a HotSwap rollout strategy in Python.

componentize-py turns this module into a component of the `strategy` world (wit/): the class
`WitWorld` implements the world's exports. The planning itself is in logic.py.

Build: `hotswap plugin build`; check: `hotswap plugin check {{file}} --server-config hotswap.toml`;
test: `python3 -m unittest`.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types
from wit_world.imports.log import Level, log

from logic import waves

SCHEMA = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "firstPercent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10,
                         "description": "the share of the fleet in the first wave"},
        "soakSeconds": {"type": "integer", "minimum": 0, "default": 0,
                        "description": "seconds to watch each wave after it finished"},
    },
})


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Description:
        return types.Description(
            name="{{name}}",
            version="0.1.0",
            summary="updates firstPercent of the fleet first, then the rest",
            params_schema=SCHEMA,
        )

    def plan(self, params: str, fleet: types.Fleet) -> types.Plan:
        try:
            p = json.loads(params)
            planned = waves(len(fleet.id_ends), p)
        except ValueError as e:
            # An Err is the refusal the operator sees.
            raise Err(f"{{name}} parameters: {e}")
        gate = types.Gate(soak_seconds=p.get("soakSeconds", 0), min_success_percent=95,
                          failure_budget=0, min_sample=1)
        log(Level.INFO, f"{len(planned)} waves over {len(fleet.id_ends)} devices")
        first = p.get("firstPercent", 10)
        return types.Plan(waves=[
            types.Wave(name=f"first {first}%" if i + 1 < len(planned) else "the rest",
                       devices=devices, mode=types.Mode.INSTALL, gate=gate, max_in_flight=None)
            for i, devices in enumerate(planned)
        ])
