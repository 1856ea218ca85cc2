"""The model-predictive planner's pure core: a MILP over the next hours, solved by HiGHS.

``plan(params, inputs)`` returns a ``Plan`` of per-step setpoints; no I/O, no asyncio. The model and
its units are documented in ``hems.planner.model``.
"""

from hems.planner.solve import plan
from hems.planner.types import (
    Deferrable,
    DRWindow,
    Plan,
    PlanInputs,
    PlannerError,
    PlannerSettings,
)

__all__ = [
    "DRWindow",
    "Deferrable",
    "Plan",
    "PlanInputs",
    "PlannerError",
    "PlannerSettings",
    "plan",
]
