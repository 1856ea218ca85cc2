"""Planner solve path: binaries only where needed, warm start, 5-min steps, errors, input validation."""

from __future__ import annotations

from dataclasses import replace

import highspy
import numpy as np
import pytest

from hems.home import HomeParams
from hems.planner import DRWindow, PlannerError, PlannerSettings, plan
from hems.planner import solve as solve_mod
from hems.planner.checks import plan_violations
from hems.planner.model import build
from hems.planner.scenarios import reference_inputs, simple_inputs

PARAMS = HomeParams()


def binaries(inputs, params=PARAMS) -> dict[str, int]:
    m = build(params, inputs, PlannerSettings())
    out = {k: int(v.size) for k, v in m.ix.items() if k.startswith("y_")}
    out["deferrable"] = sum(int(i["u"].size) for i in m.deferrables)
    out["total"] = int(m.arrays["integrality"].sum())
    return out


def test_default_tariff_needs_no_grid_or_battery_binaries():
    b = binaries(reference_inputs(96))
    assert b["total"] == b["deferrable"]  # only the deferrables' start steps are integer
    assert "y_g" not in b and "y_b" not in b


def test_binaries_only_where_export_pays_more_or_import_is_negative():
    inputs = reference_inputs(96)
    imp = inputs.import_price_per_kwh.copy()
    exp = inputs.export_price_per_kwh.copy()
    exp[10:14] = 0.9  # export pays more than import: exclusivity binaries
    imp[40:44] = -0.05  # paid to import: export (0.06) pays more too, so grid binaries there as well,
    # and battery/HVAC binaries from the start up to the last negative step (burning energy may pay)
    b = binaries(replace(inputs, import_price_per_kwh=imp, export_price_per_kwh=exp))
    assert b["y_g"] == 8 and b["y_b"] == 44 and b["y_h"] == 44
    assert b["total"] == b["deferrable"] + 8 + 44 + 44


@pytest.mark.parametrize("export_price", [0.9, 0.0])
def test_no_simultaneous_flows_with_negative_or_inverted_prices(export_price):
    inputs = reference_inputs(96)
    imp = inputs.import_price_per_kwh.copy()
    exp = inputs.export_price_per_kwh.copy()
    imp[80:88] = -0.05  # tomorrow 10:00-12:00
    exp[80:88] = export_price
    inputs = replace(inputs, import_price_per_kwh=imp, export_price_per_kwh=exp)
    p = plan(PARAMS, inputs)
    assert p.status == "optimal"
    assert plan_violations(p, inputs, PARAMS) == []
    assert all(m in ("heat", "cool", "off") for m in p.hvac_mode)
    if export_price > 0:
        assert p.grid_export_w[80:88].min() > 0  # exporting at 0.9 beats being paid 0.05 to import
    else:
        assert p.grid_import_w[80:88].min() > 0  # paid to import: PV curtailed, loads and battery fed


def test_equal_import_and_export_prices_are_netted():
    params = PARAMS
    inputs = simple_inputs(
        8, pv_w=4000.0, base_w=1000.0, import_price=0.2, export_price=0.2, battery_soc_pct=90.0
    )
    p = plan(params, inputs)
    assert plan_violations(p, inputs, params) == []
    assert np.minimum(p.grid_import_w, p.grid_export_w).max() == 0.0


def test_five_minute_reference_day_is_physical():
    inputs = reference_inputs(288, 300.0)
    p = plan(PARAMS, inputs)
    assert p.status == "optimal"
    assert plan_violations(p, inputs, PARAMS) == []
    d = {x.name: x for x in inputs.deferrables}
    for name, on in p.deferrable_on.items():
        assert on.sum() == d[name].run_steps


def test_warm_start_from_the_previous_plan_gives_the_same_optimum():
    inputs = reference_inputs(96)
    first = plan(PARAMS, inputs)
    again = plan(PARAMS, inputs, warm_start=first)
    assert again.objective == pytest.approx(first.objective, abs=PlannerSettings().mip_abs_gap)
    # one step later, with the previous plan shifted by one step
    later = replace(inputs, start_ts=inputs.start_ts + inputs.step_s)
    shifted = plan(PARAMS, later, warm_start=first)
    assert plan_violations(shifted, later, PARAMS) == []


def _cold_mip_objective(inputs, settings) -> float:
    m = build(PARAMS, inputs, settings)
    a = m.arrays
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.passModel(
        a["cost"].size, a["rlo"].size, a["value"].size, 1, 1, m.offset, a["cost"], a["lb"], a["ub"],
        a["rlo"], a["rhi"], a["start"], a["index"], a["value"], a["integrality"],
    )  # fmt: skip
    h.run()
    return h.getInfo().objective_function_value


@pytest.mark.parametrize("own_nodes", [solve_mod.BB_NODE_LIMIT, 0])
def test_fractional_relaxation_paths_are_exact(monkeypatch, own_nodes):
    """LP relaxation fractional (the dishwasher splits between two starts), no rounding within a zero
    gap: the own branch and bound, or with no nodes allowed HiGHS's branch and cut, must both reach
    the cold MIP's optimum."""
    calls = []
    real = solve_mod._solve_mip
    monkeypatch.setattr(solve_mod, "_solve_mip", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(solve_mod, "BB_NODE_LIMIT", own_nodes)
    inputs = reference_inputs(96, 300.0)
    settings = PlannerSettings(mip_abs_gap=0.0, mip_rel_gap=0.0)
    p = plan(PARAMS, inputs, settings=settings)
    assert p.status == "optimal"
    assert bool(calls) == (own_nodes == 0)
    assert plan_violations(p, inputs, PARAMS) == []
    assert p.objective == pytest.approx(_cold_mip_objective(inputs, settings), abs=1e-6)


def test_planner_error_when_highs_returns_nothing(monkeypatch):
    monkeypatch.setattr(solve_mod, "_run", lambda h: None)  # the solver never runs: no solution at all
    with pytest.raises(PlannerError):
        plan(PARAMS, simple_inputs(4))


def test_time_limit_is_passed_and_a_plan_still_comes_back():
    p = plan(PARAMS, reference_inputs(96), time_limit_s=0.5)
    assert p.status in ("optimal", "time_limit", "feasible")
    assert p.solve_ms > 0 and p.build_ms > 0


def test_inputs_are_validated_with_the_field_named():
    inputs = simple_inputs(4)
    with pytest.raises(ValueError, match="pv_forecast_w"):
        plan(PARAMS, replace(inputs, pv_forecast_w=np.zeros(3)))
    with pytest.raises(ValueError, match="outdoor_temp_c"):
        plan(PARAMS, replace(inputs, outdoor_temp_c=np.array([20.0, np.nan, 20.0, 20.0])))
    with pytest.raises(ValueError, match="baseline_w"):
        plan(PARAMS, replace(inputs, dr_windows=(DRWindow(0, 2, shed_w=500.0),)))
