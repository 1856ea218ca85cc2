"""``plan()``: build the MILP, solve it with HiGHS, decode the solution into a ``Plan``."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import highspy
import numpy as np

from hems.home import HomeParams
from hems.planner.model import PRICE_EPS, Model, build
from hems.planner.reasons import derive_reasons
from hems.planner.types import Plan, PlanInputs, PlannerError, PlannerSettings

try:  # the bare solver: highspy.Highs() prints a banner on stdout and adds a Python callback layer
    from highspy._core import _Highs as _Solver
except ImportError:  # pragma: no cover - other highspy layouts
    _Solver = highspy.Highs

_DEFAULT_SETTINGS = PlannerSettings()
_MS = highspy.HighsModelStatus
INF = math.inf
BB_NODE_LIMIT = 40  # own branch-and-bound nodes before HiGHS's MIP solver takes over
MIN_MIP_S = 0.01  # with less time left, return the incumbent rather than start HiGHS's MIP
BB_MAX_FRACTIONAL_FLOW_BINARIES = 6  # more fractional y_* binaries at the root: HiGHS's cuts do better


def plan(
    params: HomeParams,
    inputs: PlanInputs,
    *,
    time_limit_s: float = 5.0,
    warm_start: Plan | None = None,
    settings: PlannerSettings | None = None,
) -> Plan:
    """Plan the home over the horizon of ``inputs``. Pure: no I/O, no clock, no global state.

    Raises ``ValueError`` for inconsistent inputs (wrong array lengths, NaN) and ``PlannerError`` when
    HiGHS finds no solution at all (the caller then falls back to rules).
    """
    settings = settings or _DEFAULT_SETTINGS
    t0 = time.perf_counter()
    model = build(params, inputs, settings)
    build_ms = (time.perf_counter() - t0) * 1000.0

    t1 = time.perf_counter()
    x, objective, status = _solve(model, settings, time_limit_s, warm_start, inputs)
    solve_ms = (time.perf_counter() - t1) * 1000.0
    return _decode(params, inputs, settings, model, x, objective, status, build_ms, solve_ms)


def _solve(
    model: Model,
    settings: PlannerSettings,
    time_limit_s: float,
    warm_start: Plan | None,
    inputs: PlanInputs,
) -> tuple[np.ndarray, float, str]:
    """Solve the MILP exactly, cheaply when the LP relaxation allows it.

    1. Solve the LP relaxation (simplex, no presolve: fastest for this small, sparse model). If every
       integer column is integral, that vertex is MIP-optimal.
    2. Otherwise try a few roundings (``_candidates``): fix the integers, re-solve the LP from the
       current basis (about 1 ms each). The first incumbent within the MIP gap (``mip_abs_gap`` or
       ``mip_rel_gap``) of the LP bound is optimal by HiGHS's own criterion.
    3. Otherwise a small depth-first branch and bound on the same LP object: bounds change, the dual
       simplex restarts from the last basis (~2 ms a node). Branching on the most fractional binary
       bisects a deferrable's start time, so the usual one or two fractional deferrables close in a
       few nodes. Nodes that cannot beat the incumbent by more than the gap are pruned, so a finished
       search is optimal within the same tolerances.
    4. Past ``BB_NODE_LIMIT`` nodes, or straight away when the relaxation has more than a few
       fractional flow binaries (weak relaxations: import/export where export pays more than import,
       battery/HVAC at negative prices), HiGHS's branch and cut takes over from the best incumbent.
    """
    deadline = time.perf_counter() + max(float(time_limit_s), 1e-3)
    a = model.arrays
    h = _Solver()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", int(settings.threads))
    h.setOptionValue("mip_rel_gap", float(settings.mip_rel_gap))
    h.setOptionValue("mip_abs_gap", max(float(settings.mip_abs_gap), 1e-9))
    h.setOptionValue("presolve", "off")
    h.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
    integer = np.flatnonzero(a["integrality"]).astype(np.int32)
    status = h.passModel(
        a["cost"].size,
        a["rlo"].size,
        a["value"].size,
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        float(model.offset),
        a["cost"],
        a["lb"],
        a["ub"],
        a["rlo"],
        a["rhi"],
        a["start"],
        a["index"],
        a["value"],
        np.zeros(a["cost"].size, dtype=np.int32),  # the LP relaxation first
    )
    if status == highspy.HighsStatus.kError:
        raise PlannerError("HiGHS rejected the planning model")
    _run(h)
    if h.getModelStatus() != _MS.kOptimal:
        # all constraints are soft or always satisfiable: this is a solver failure, not the home
        return _solve_mip(h, model, integer, None, deadline, warm_start, inputs)
    x = np.asarray(h.getSolution().col_value, dtype=float)
    bound = float(h.getInfo().objective_function_value)
    if integer.size == 0 or np.all(np.abs(x[integer] - np.round(x[integer])) <= 1e-6):
        return x, bound, "optimal"

    def gap(obj: float) -> float:  # what the MIP tolerances accept
        return max(settings.mip_abs_gap, settings.mip_rel_gap * abs(obj), 1e-9)

    best_x, best_obj = None, INF
    for cand in _candidates(model, x, warm_start, inputs):
        obj, xc = _fixed_lp(h, integer, cand[integer], cand[integer], deadline)
        if xc is not None and obj < best_obj:
            best_x, best_obj = xc, obj
            if best_obj - bound <= gap(best_obj):
                return best_x, best_obj, "optimal"
        if time.perf_counter() > deadline:
            break

    # 3. a small depth-first branch and bound on the same LP (each node a hot-started dual simplex)
    lb0, ub0 = a["lb"][integer].copy(), a["ub"][integer].copy()
    grid_like = np.concatenate([model.ix[k] for k in model.ix if k.startswith("y_")] or [np.zeros(0, int)])
    fractional = int(np.sum(np.abs(x[grid_like] - np.round(x[grid_like])) > 1e-6))
    stack = [(lb0, ub0)] if fractional <= BB_MAX_FRACTIONAL_FLOW_BINARIES else []
    nodes = 0
    while stack and nodes < BB_NODE_LIMIT and time.perf_counter() < deadline:
        lb, ub = stack.pop()
        nodes += 1
        obj, xn = _fixed_lp(h, integer, lb, ub, deadline)
        if xn is None or obj >= best_obj - gap(best_obj):
            continue  # infeasible, or cannot beat the incumbent by more than the gap
        v = xn[integer]
        frac = np.abs(v - np.round(v))
        if frac.max() <= 1e-6:
            best_x, best_obj = xn, obj
            continue
        j = int(np.argmax(frac))  # for a deferrable: bisects its start time
        down = (lb, ub.copy())
        down[1][j] = 0.0
        up = (lb.copy(), ub)
        up[0][j] = 1.0
        stack += [down, up] if v[j] >= 0.5 else [up, down]  # the nearer child first
    if nodes and not stack and best_x is not None:
        return best_x, best_obj, "optimal"
    if time.perf_counter() >= deadline:
        if best_x is None:
            raise PlannerError("time limit reached before any plan was found")
        return best_x, best_obj, "time_limit"

    # 4. HiGHS's branch and cut, from the best incumbent
    h.changeColsBounds(integer.size, integer, lb0, ub0)
    return _solve_mip(h, model, integer, best_x, deadline, warm_start, inputs, best_obj)


def _fixed_lp(
    h: _Solver, integer: np.ndarray, lb: np.ndarray, ub: np.ndarray, deadline: float
) -> tuple[float, np.ndarray | None]:
    """Re-solve the LP with new bounds on the integer columns, from the current basis."""
    h.changeColsBounds(integer.size, integer, lb, ub)
    h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 1e-3))
    _run(h)
    if h.getModelStatus() != _MS.kOptimal:
        return INF, None
    return float(h.getInfo().objective_function_value), np.asarray(h.getSolution().col_value, dtype=float)


def _solve_mip(
    h: _Solver,
    model: Model,
    integer: np.ndarray,
    incumbent: np.ndarray | None,
    deadline: float,
    warm_start: Plan | None,
    inputs: PlanInputs,
    incumbent_obj: float = INF,
) -> tuple[np.ndarray, float, str]:
    if incumbent is not None and deadline - time.perf_counter() < MIN_MIP_S:
        return incumbent, incumbent_obj, "time_limit"
    if integer.size:
        h.changeColsIntegrality(integer.size, integer, np.ones(integer.size, dtype=np.uint8))
    # the rounded incumbent makes HiGHS's sub-MIP heuristics mostly redundant, and they dominate its time
    for option in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_root_reduced_cost"):
        h.setOptionValue(option, incumbent is None)
    h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 1e-3))
    if incumbent is not None:
        sol = highspy.HighsSolution()
        sol.col_value = incumbent.tolist()
        sol.value_valid = True
        h.setSolution(sol)
    elif warm_start is not None and integer.size:
        hint = _warm_values(model, warm_start, inputs)
        if hint is not None:
            h.setSolution(hint[0].size, hint[0], hint[1])
    _run(h)
    ms = h.getModelStatus()
    info = h.getInfo()
    if ms == _MS.kOptimal:
        label = "optimal"
    elif ms == _MS.kTimeLimit:
        label = "time_limit"
    else:
        label = "feasible"
    found = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible.value
    if found and float(info.objective_function_value) <= incumbent_obj + 1e-9:
        return np.asarray(h.getSolution().col_value, dtype=float), float(info.objective_function_value), label
    if incumbent is not None:  # HiGHS stopped before it used (or beat) the incumbent
        return incumbent, incumbent_obj, label
    raise PlannerError(f"HiGHS found no plan: {h.modelStatusToString(ms)}")


def _run(h: _Solver) -> None:
    try:
        h.run()
    except Exception as exc:  # pragma: no cover - solver crash
        raise PlannerError(f"HiGHS failed: {exc}") from exc


MAX_ALTERNATIVES = 3  # per fractional deferrable, besides its heaviest start


def _candidates(model: Model, x: np.ndarray, warm: Plan | None, inputs: PlanInputs):
    """Integral assignments near the LP optimum, best guess first (full column vectors).

    The first rounds every deferrable to its heaviest start (or to "not run" when that weighs most)
    and each import/export binary to the larger flow; the next ones change one fractional deferrable
    to another start the LP used, then all import/export binaries to "export" (the common optimum
    where export pays more), then the previous plan's choices shifted to this horizon.
    """
    first = x.copy()
    integer = np.flatnonzero(model.arrays["integrality"])
    first[integer] = np.round(x[integer])
    options: list[tuple[dict, list[int]]] = []  # per deferrable: ranked choices (-1 = not run)
    for info in model.deferrables:
        u = info["u"]
        if not u.size:
            continue
        weight = np.append(np.diff(x[u], prepend=0.0), x[info["m"]][0])  # starts z..., then "not run"
        ranked = [int(i) for i in np.argsort(-weight) if weight[i] > 1e-6][: MAX_ALTERNATIVES + 1]
        choices = [i if i < u.size else -1 for i in ranked] or [-1]
        _set_start(first, info, choices[0])
        options.append((info, choices))
    if "y_g" in model.ix:
        k = model.at["y_g"]
        first[model.ix["y_g"]] = (x[model.ix["imp"][k]] >= x[model.ix["exp"][k]]).astype(float)
    yield first
    for info, choices in options:
        for choice in choices[1:]:
            cand = first.copy()
            _set_start(cand, info, choice)
            yield cand
    if "y_g" in model.ix:
        cand = first.copy()
        cand[model.ix["y_g"]] = 0.0
        yield cand
    if warm is not None:
        hint = _warm_values(model, warm, inputs)
        if hint is not None:
            cand = first.copy()
            cand[hint[0]] = hint[1]
            yield cand


def _set_start(v: np.ndarray, info: dict, choice: int) -> None:
    u = info["u"]
    step = np.zeros(u.size)
    if choice >= 0:
        step[choice:] = 1.0
    v[u] = step
    v[info["m"]] = 0.0 if choice >= 0 else 1.0


def _warm_values(model: Model, prev: Plan, inputs: PlanInputs) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer values taken from the previous plan, shifted to this horizon (a sparse MIP start).

    HiGHS fixes them and solves the remaining LP to get a first incumbent.
    """
    if abs(prev.step_s - inputs.step_s) > 1e-6:
        return None
    shift = round((inputs.start_ts - prev.start_ts) / inputs.step_s)
    if shift < 0:
        return None
    idx: list[np.ndarray] = []
    val: list[np.ndarray] = []
    n_prev = len(prev.grid_import_w)
    for info in model.deferrables:
        z = info["u"]
        if z.size == 0:
            continue
        on = prev.deferrable_on.get(info["d"].name)
        if on is None:
            return None
        on_idx = np.flatnonzero(np.asarray(on, dtype=bool))
        if on_idx.size == 0:
            return None
        start = int(on_idx[0]) - shift
        if start not in set(info["starts"].tolist()):
            return None
        vals = (info["starts"] >= start).astype(float)
        idx += [z, info["m"]]
        val += [vals, np.zeros(1)]
    if "y_g" in model.ix:
        k = model.at["y_g"] + shift
        ok = k < n_prev
        if not ok.all():
            return None
        idx.append(model.ix["y_g"])
        val.append((prev.grid_import_w[k] > prev.grid_export_w[k]).astype(float))
    if not idx:
        return None
    return np.concatenate(idx).astype(np.int32), np.concatenate(val).astype(float)


def _scatter(n: int, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(n)
    out[at] = values
    return out


def _decode(
    params: HomeParams,
    inputs: PlanInputs,
    s: PlannerSettings,
    model: Model,
    x: np.ndarray,
    objective: float,
    status: str,
    build_ms: float,
    solve_ms: float,
) -> Plan:
    n, dt, ix, at, data = model.n_steps, model.dt_h, model.ix, model.at, model.data

    def col(name: str) -> np.ndarray:
        return x[ix[name]] if name in ix else np.zeros(n)

    def tidy(v: np.ndarray) -> np.ndarray:  # remove solver noise below 1 mW
        return np.where(np.abs(v) < 1e-6, 0.0, v)

    imp_dr = _scatter(n, at["imp_dr"], x[ix["imp_dr"]])
    imp_sv = _scatter(n, at["imp_sv"], x[ix["imp_sv"]])
    imp = col("imp") + imp_dr + imp_sv
    exp = col("exp")
    tie = np.abs(data["p_imp"] - data["p_exp"]) <= PRICE_EPS  # equal prices: net the flows, same cost
    both = np.where(tie, np.minimum(imp, exp), 0.0)
    imp, exp = tidy(imp - both), tidy(exp - both)
    pv = tidy(col("pv"))
    bc, bd = tidy(col("bc")), tidy(col("bd"))
    penalties: dict[str, float] = {}

    # battery
    cap = data["bat_cap"]
    if "sb" in ix:
        rd = _scatter(n, at["rd"], x[ix["rd"]])
        soc = (x[ix["sb"]] - rd) / cap * 100.0
        penalties["reserve_deficit_wh_h"] = float(rd.sum() * dt * 1000.0)
        penalties["reserve_cost"] = float(rd.sum() * dt * s.reserve_below_per_kwh_h)
        penalties["battery_throughput_cost"] = float((bc + bd).sum() * dt * s.battery_throughput_per_kwh)
        penalties["terminal_value_cost"] = float(-data["terminal_value"] * soc[-1] / 100.0 * cap)
    else:
        soc = np.zeros(n)

    # EV
    ec = np.zeros(n)
    ed = np.zeros(n)
    ev_cap = data["ev_cap"]
    if "ec" in ix:
        ec = tidy(_scatter(n, at["ev"], x[ix["ec"]]))
        eta = params.ev.charge_efficiency
        if data["ev_v2h"]:
            ed = tidy(_scatter(n, at["ev"], x[ix["ed"]]))
        energy = data["ev_e0"] + np.cumsum(eta * ec * dt - ed * dt / eta)
        ev_soc = energy / ev_cap * 100.0
        short = float(x[ix["es"]].sum()) if ix["es"].size else 0.0
        penalties["ev_target_missed_wh"] = short * 1000.0
        penalties["ev_target_cost"] = short * s.ev_target_missed_per_kwh
        penalties["ev_early_tiebreak_cost"] = float(
            np.sum(x[ix["ec"]] * dt * s.ev_late_cost_per_kwh * at["ev"] / max(n, 1))
        )
        if "eb" in ix:  # value of charge banked for a departure beyond the horizon
            penalties["ev_banked_value_cost"] = float(-np.sum(x[ix["eb"]]) * data["ev_bank_value"])
        if data["ev_v2h"]:
            penalties["ev_v2h_throughput_cost"] = float(ed.sum() * dt * s.ev_v2h_throughput_per_kwh)
    else:
        ev_soc = np.full(n, data["ev_e0"] / ev_cap * 100.0 if ev_cap > 0 else 0.0)

    # HVAC
    hh, hc = tidy(col("hh")), tidy(col("hc"))
    tl, th = col("tl"), col("th")
    indoor = col("tc") - tl + th
    dev = np.maximum(tl, 0.0) + np.maximum(th, 0.0)
    penalties["comfort_degree_hours"] = float(dev.sum() * dt)
    penalties["comfort_cost"] = float(dev.sum() * dt * s.comfort_per_degree_hour)
    mode = tuple("heat" if a > 1e-3 else "cool" if b > 1e-3 else "off" for a, b in zip(hh, hc, strict=True))

    # water heater
    wh = tidy(col("wh"))
    if "tv" in ix:
        ts = np.maximum(x[ix["ts"]], 0.0)
        tank = x[ix["tv"]] - ts
        deficit = float(ts.sum() * data["tank_c"] * dt)
        penalties["hot_water_deficit_wh_h"] = deficit * 1000.0
        penalties["hot_water_cost"] = deficit * s.tank_below_min_per_kwh_h
    else:
        tank = np.full(n, float(inputs.tank_temp_c))

    # deferrables
    on: dict[str, np.ndarray] = {}
    defer_load = np.zeros(n)
    missed = 0.0
    missed_cost = 0.0
    deferred_cost = 0.0
    for info in model.deferrables:
        d = info["d"]
        run = np.zeros(n, dtype=bool)
        if info["u"].size:
            started = np.flatnonzero(x[info["u"]] > 0.5)
            if started.size:
                st = int(info["starts"][started[0]])
                run[st : st + d.run_steps] = True
            mv = float(x[info["m"]][0])
            if info["later"]:
                deferred_cost += mv * info["miss_cost"]
            else:
                missed += mv
                missed_cost += mv * info["miss_cost"]
        elif info.get("missed_const"):
            missed += 1.0
            missed_cost += s.deferrable_missed
        on[d.name] = run
        defer_load += run * d.power_w / 1000.0
    if model.deferrables:
        penalties["deferrables_missed"] = missed
        penalties["deferrable_cost"] = missed_cost
        penalties["deferred_run_cost"] = deferred_cost

    # grid limits
    penalties["dr_cap_excess_wh"] = float(imp_dr.sum() * dt * 1000.0)
    penalties["dr_cost"] = float(imp_dr.sum() * dt * s.dr_excess_per_kwh)
    penalties["service_limit_excess_wh"] = float(imp_sv.sum() * dt * 1000.0)
    penalties["service_limit_cost"] = float(imp_sv.sum() * dt * s.service_limit_excess_per_kwh)
    penalties["pv_bonus_cost"] = float(-pv.sum() * dt * s.pv_use_bonus_per_kwh)
    penalties["hvac_tiebreak_cost"] = float((hh + hc).sum() * dt * s.hvac_use_cost_per_kwh)

    cost = float(np.sum((imp * data["p_imp"] - exp * data["p_exp"]) * dt))
    w = 1000.0
    result = Plan(
        start_ts=float(inputs.start_ts),
        step_s=float(inputs.step_s),
        grid_import_w=imp * w,
        grid_export_w=exp * w,
        battery_charge_w=bc * w,
        battery_discharge_w=bd * w,
        battery_soc_pct=soc,
        ev_charge_w=ec * w,
        ev_discharge_w=ed * w,
        ev_soc_pct=ev_soc,
        hvac_power_w=(hh + hc) * w,
        indoor_temp_c=indoor,
        water_heater_w=wh * w,
        tank_temp_c=tank,
        pv_used_w=pv * w,
        pv_curtailed_w=np.maximum(data["pv_fc"] - pv, 0.0) * w,
        deferrable_on=on,
        cost=cost,
        penalties=penalties,
        objective=objective,
        status=status,
        solve_ms=solve_ms,
        build_ms=build_ms,
        reasons=(),
        hvac_mode=mode,
        dr_limit_w=data["dr_lim"] * w,
    )
    reasons = derive_reasons(params, inputs, result, hvac_cooling_w=hc * w, hvac_heating_w=hh * w)
    return replace(result, reasons=reasons)
