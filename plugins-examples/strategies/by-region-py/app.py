"""`by-region-py`: an example HotSwap strategy in Python, one wave per region.

Build it with `hotswap plugin build` (componentize-py), check it with `hotswap plugin check
dist/by-region-py.wasm --server-config hotswap.toml`; `python3 -m unittest` tests its logic.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

from logic import waves

SCHEMA = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "order": {"type": "array", "items": {"type": "string"}, "default": [],
                  "description": "regions first, in this order; the others follow by name"},
        "skipOffline": {"type": "boolean", "default": False,
                        "description": "leave out devices offline when the plan is made"},
        "soakSeconds": {"type": "integer", "minimum": 0, "default": 0},
    },
})


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Description:
        return types.Description("by-region-py", "1.0.0", "one wave per region, in the order given", SCHEMA)

    def plan(self, params: str, fleet: types.Fleet) -> types.Plan:
        try:
            p = json.loads(params)
            planned = waves(fleet.region, fleet.regions, fleet.online, p)
        except ValueError as e:
            raise Err(f"by-region-py parameters: {e}")
        gate = types.Gate(soak_seconds=p.get("soakSeconds", 0), min_success_percent=95,
                          failure_budget=0, min_sample=1)
        return types.Plan(waves=[
            types.Wave(name=f"region {name}", devices=devices, mode=types.Mode.INSTALL,
                       gate=gate, max_in_flight=None)
            for name, devices in planned
        ])
