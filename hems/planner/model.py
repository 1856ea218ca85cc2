"""The planning MILP: built with numpy in one sparse matrix, solved by HiGHS in one call.

Units inside the model: power kW, energy kWh, temperature °C, money in the tariff's currency;
``dt`` is the step length in hours, ``k = 0..N-1`` the step, states are at the END of step ``k``
(the state before step 0 is the measured one, written ``x(-1)``). Inputs and outputs are in W/Wh.

Variables (all continuous unless marked binary; bounds in brackets)
--------------------------------------------------------------------
Grid
  ``imp[k]``     [0, min(service, DR limit)]  import (kW), cost ``p_imp*dt``
  ``imp_dr[k]``  [0, service - DR limit]      import above a DR cap / shed (kW), only in DR steps with a
                                              limit below the service limit; cost ``(p_imp + dr_excess)*dt``
  ``imp_sv[k]``  [0, inf)                     import above the service limit (kW), only in steps whose base
                                              load alone exceeds it; cost ``(p_imp + service_excess)*dt``
  ``exp[k]``     [0, min(export limit, service)]  export (kW), cost ``-p_exp*dt``; fixed to 0 where
                 ``p_imp < p_exp <= 0``: export earns nothing there and PV can be curtailed instead (a
                 simplification: it forgoes dumping stored energy to re-buy it at the negative price,
                 and saves the import/export binaries of those steps)
  ``y_g[k]``     binary, 1 = importing; only in steps with ``p_exp > p_imp`` and ``p_exp > 0``. Elsewhere
                 simultaneous import and export loses money (``p_exp < p_imp``: never optimal) or changes
                 nothing (``p_exp == p_imp``: the decoder nets the two flows at equal cost)
PV
  ``pv[k]``      [0, forecast]                PV used (kW); curtailed = forecast - pv; tiny bonus
                                              ``-pv_use_bonus*dt`` so that PV is not curtailed at a 0 price
Battery (energy ``soc[k] = sb[k] - rd[k]``, kWh)
  ``bc[k]``      [0, max charge]              charge, AC side (kW), cost ``throughput*dt``
  ``bd[k]``      [0, max discharge]           discharge, AC side (kW), cost ``throughput*dt``
  ``sb[k]``      [floor, max]                 SOC part kept above the floor: floor = reserve outside DR
                                              windows, min SOC inside them (hardware limits hard); the last
                                              one has cost ``-terminal_value`` (value of energy left over)
  ``rd[k]``      [0, reserve - min]           energy below the reserve, outside DR windows (kWh), cost
                                              ``reserve_below*dt`` (soft reserve: kWh·h)
  ``y_b[k]``     binary, 1 = charging; only in steps up to the last one with a negative import price:
                 burning energy in simultaneous charge and discharge can only pay where being paid to
                 import is now or ahead (empty the store now, be paid to refill it); elsewhere the
                 throughput cost and losses make it unattractive without a binary
EV (only in steps where it is plugged and before its departure: the "charge steps")
  ``ec[j]``      [0, charger max]             charging power (kW)
  ``ed[j]``      [0, charger max]             V2H discharge (kW), only if allowed, cost ``v2h_throughput*dt``
  ``ee[j]``      [floor, capacity]            EV energy (kWh), only with V2H (without it, SOC is monotone
                                              and two sums replace the state); floor = min(V2H floor, E0)
  ``es``         [0, target - E0 or floor]    energy short of the target at departure (kWh), cost
                                              ``ev_target_missed``
  ``y_e[j]``     binary, V2H only, same steps as ``y_b``
HVAC (1R1C; ``T[k] = tc[k] - tl[k] + th[k]``)
  ``hh[k]``, ``hc[k]``  [0, max]              heating / cooling electric power (kW), tiny cost
                                              ``hvac_use_cost*dt`` (> PV bonus: never run to burn PV)
  ``tc[k]``      [comfort min, comfort max]   indoor temperature clipped to the band (°C)
  ``tl[k]``, ``th[k]``  [0, inf)              degrees below / above the band, cost ``comfort*dt`` (K·h)
  ``y_h[k]``     binary, 1 = heating; same steps as ``y_b`` (elsewhere the tie-break cost suffices)
Water heater (tank temperature ``θ[k] = tv[k] - ts[k]``)
  ``wh[k]``      [0, element power]           element power (kW): a duty cycle over the step, continuous
  ``tv[k]``      [min temp, setpoint + headroom]  tank temperature clipped to the minimum (°C)
  ``ts[k]``      [0, inf)                     degrees below the minimum, cost ``tank_below*C_w*dt`` (kWh·h)
Deferrables (each ``j``, run length ``L``, power ``P``, allowed starts ``s_0..s_M-1`` fully inside the
window and the horizon)
  ``u[j,i]``     binary, 1 = started at or before ``s_i`` (the cumulative form of the start binaries
                 ``z_i = u_i - u_(i-1)``: same LP relaxation, L times fewer nonzeros, better branching)
  ``m[j]``       [0, 1]  not run in the horizon: cost ``deferrable_missed``, or, when the window extends
                 past the horizon, the energy at the horizon's lowest price (it can run later)

Constraints
-----------
  balance[k]   pv + imp + imp_dr + imp_sv + bd + ed - exp - bc - ec - hh - hc - wh - Σ P·running = base
  inverter[k]  -AC rating <= pv + bd - bc <= AC rating                     (hybrid inverter AC port)
  soc[k]       soc[k] = soc[k-1] + η_c·dt·bc[k] - dt/η_d·bd[k]
  ev (no V2H)  Σ η·dt·ec + es >= need;  Σ η·dt·ec <= capacity - E0        (need = target - E0, less what
               can still be charged after the horizon when the departure lies beyond it)
  ev (V2H)     ee[j] = ee[j-1] + η·dt·ec[j] - dt/η·ed[j];  ee[last] + es >= target
  hvac_max[k]  hh + hc <= max electric power
  thermal[k]   T[k] = a·T[k-1] + (1-a)·(T_out[k] + R·(COP_h·hh - COP_c·hc + gains)),  a = exp(-dt/(R·C))
               (exact for inputs constant over the step)
  tank[k]      θ[k] = b·θ[k-1] + (1-b)·T_amb + (1-b)/UA·(wh - draw/dt),  b = exp(-UA·dt/C_w)
               (standby loss UA·(θ - T_amb), linear, exact for a constant element power and draw)
  run[j]       u[j,i] >= u[j,i-1];  u[j,M-1] + m[j] = 1;  running at k = u[j,i(k)] - u[j,i(k-L)]
               with i(t) the last start <= t (0 before s_0)
  excl[k]      imp + imp_dr + imp_sv <= M_imp·y_g;  exp <= M_exp·(1 - y_g)        (only where y_g exists;
               M_imp = max consumption, M_exp = max own generation - base load, both per step)
  own[k]       exp <= pv + bd + ed   (where y_g exists: valid for exclusive flows, cuts the relaxation's
               import-to-export arbitrage)
  b_excl[k]    bc <= max charge·y_b;  bd <= max discharge·(1 - y_b)               (same for y_h, y_e)

Objective: Σ dt·(p_imp·import - p_exp·export) + battery/V2H throughput + penalties - terminal value
- PV-use bonus (+ the estimated cost of deferrables left for after the horizon). ``Plan.penalties``
lists every term (``*_cost`` keys), so ``objective == cost + Σ penalties[*_cost]``.

The device-level binaries are avoided where the economics make them redundant: the default TOU day
has only the deferrables' start binaries. How it is solved: ``hems.planner.solve._solve``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from hems.home import HomeParams
from hems.planner.types import PlanInputs, PlannerSettings

INF = math.inf
PRICE_EPS = 1e-9  # prices closer than this are equal
WATER_KWH_PER_L_K = 4.186 / 3600.0  # 1 kg/L × 4.186 kJ/(kg·K)


class _Lp:
    """Collects column blocks, row blocks and coefficient triplets, then makes one CSC matrix."""

    def __init__(self) -> None:
        self.n = 0
        self.m = 0
        self._cost: list[np.ndarray] = []
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self._rlo: list[np.ndarray] = []
        self._rhi: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self.offset = 0.0

    def cols(self, count: int, lb, ub, cost=0.0, integer: bool = False) -> np.ndarray:
        idx = np.arange(self.n, self.n + count, dtype=np.int64)
        self.n += count
        self._lb.append(np.broadcast_to(np.asarray(lb, dtype=float), (count,)))
        self._ub.append(np.broadcast_to(np.asarray(ub, dtype=float), (count,)))
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (count,)))
        self._int.append(np.full(count, 1 if integer else 0, dtype=np.int32))
        return idx

    def rows(self, count: int, lo, hi) -> np.ndarray:
        idx = np.arange(self.m, self.m + count, dtype=np.int64)
        self.m += count
        self._rlo.append(np.broadcast_to(np.asarray(lo, dtype=float), (count,)))
        self._rhi.append(np.broadcast_to(np.asarray(hi, dtype=float), (count,)))
        return idx

    def coef(self, rows: np.ndarray, cols: np.ndarray, vals) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.size == 0:
            return
        self._r.append(rows)
        self._c.append(cols)
        self._v.append(np.broadcast_to(np.asarray(vals, dtype=float), rows.shape))

    def finish(self) -> dict:
        def cat(parts, dtype=float):
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

        r, c, v = cat(self._r, np.int64), cat(self._c, np.int64), cat(self._v)
        a = sp.csc_matrix((v, (r, c)), shape=(self.m, self.n))
        a.sum_duplicates()
        a.eliminate_zeros()
        integrality = cat(self._int, np.int32)
        return {
            "cost": cat(self._cost),
            "lb": cat(self._lb),
            "ub": cat(self._ub),
            "rlo": cat(self._rlo),
            "rhi": cat(self._rhi),
            "start": a.indptr.astype(np.int32),
            "index": a.indices.astype(np.int32),
            "value": a.data.astype(float),
            "integrality": integrality,
            "has_int": bool(integrality.any()),
        }


@dataclass
class Model:
    """The built LP/MIP and where each quantity lives in the column vector."""

    n_steps: int
    dt_h: float
    arrays: dict
    offset: float
    ix: dict[str, np.ndarray] = field(default_factory=dict)  # name -> column indices
    at: dict[str, np.ndarray] = field(default_factory=dict)  # name -> step indices of partial blocks
    data: dict = field(default_factory=dict)  # constants needed to decode the solution
    deferrables: list[dict] = field(default_factory=list)


def _series(value, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"PlanInputs.{name}: expected {n} values (one per step), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"PlanInputs.{name}: contains NaN or infinite values")
    return arr


def dr_limits_w(inputs: PlanInputs, n: int) -> np.ndarray:
    """Per-step import limit (W) from the DR windows; inf where none applies."""
    lim = np.full(n, INF)
    for w in inputs.dr_windows:
        s0, s1 = max(w.start_step, 0), min(w.end_step, n)
        if s1 <= s0:
            continue
        if w.import_cap_w is not None:
            lim[s0:s1] = np.minimum(lim[s0:s1], max(float(w.import_cap_w), 0.0))
        if w.shed_w is not None:
            if w.baseline_w is None:
                raise ValueError(f"DRWindow {w.event_id!r}: shed_w needs baseline_w (one value per step)")
            base = np.asarray(w.baseline_w, dtype=float)
            if base.ndim == 0:
                base = np.full(w.end_step - w.start_step, float(base))
            if base.shape != (w.end_step - w.start_step,):
                raise ValueError(
                    f"DRWindow {w.event_id!r}: baseline_w needs {w.end_step - w.start_step} values, "
                    f"got {base.shape}"
                )
            seg = base[s0 - w.start_step : s1 - w.start_step] - float(w.shed_w)
            lim[s0:s1] = np.minimum(lim[s0:s1], np.maximum(seg, 0.0))
    return lim


def ev_charge_steps(inputs: PlanInputs, n: int) -> tuple[np.ndarray, int | None]:
    """Steps in which the EV can charge, and its departure step (None: no departure in view).

    With a departure step, the charge steps are the plugged steps before it. Without one, they are the
    first plugged run, and its end (if inside the horizon) is taken as the departure.
    """
    plugged = np.asarray(inputs.ev_plugged, dtype=bool)
    if plugged.shape != (n,):
        raise ValueError(f"PlanInputs.ev_plugged: expected {n} values, got shape {plugged.shape}")
    dep = inputs.ev_departure_step
    if dep is not None:
        idx = np.flatnonzero(plugged[: max(min(dep, n), 0)])
        return idx, dep
    on = np.flatnonzero(plugged)
    if on.size == 0:
        return on, None
    first = on[0]
    off = np.flatnonzero(~plugged[first:])
    end = first + off[0] if off.size else n
    return np.arange(first, end), (end if end < n else None)


def build(params: HomeParams, inputs: PlanInputs, settings: PlannerSettings) -> Model:
    """Assemble the MILP (see the module docstring) as arrays ready for ``Highs.passModel``."""
    s = settings
    p_imp = np.asarray(inputs.import_price_per_kwh, dtype=float)
    n = int(p_imp.shape[0]) if p_imp.ndim == 1 else 0
    if n == 0:
        raise ValueError("PlanInputs.import_price_per_kwh: need at least one step")
    if not inputs.step_s > 0:
        raise ValueError(f"PlanInputs.step_s must be > 0, got {inputs.step_s}")
    p_imp = _series(p_imp, n, "import_price_per_kwh")
    p_exp = _series(inputs.export_price_per_kwh, n, "export_price_per_kwh")
    pv_fc = np.maximum(_series(inputs.pv_forecast_w, n, "pv_forecast_w"), 0.0) / 1000.0
    pv_fc[pv_fc < 1e-6] = 0.0  # below 1 mW: night (keeps tiny bounds out of the LP)
    base = np.maximum(_series(inputs.base_load_forecast_w, n, "base_load_forecast_w"), 0.0) / 1000.0
    t_out = _series(inputs.outdoor_temp_c, n, "outdoor_temp_c")
    draw = np.maximum(_series(inputs.hot_water_wh, n, "hot_water_wh"), 0.0) / 1000.0
    c_min = _series(inputs.comfort_min_c, n, "comfort_min_c")
    c_max = _series(inputs.comfort_max_c, n, "comfort_max_c")
    dt = inputs.step_s / 3600.0
    lp = _Lp()
    m = Model(n_steps=n, dt_h=dt, arrays={}, offset=0.0)
    ix, at, data = m.ix, m.at, m.data
    data["p_imp"], data["p_exp"], data["pv_fc"], data["base"] = p_imp, p_exp, pv_fc, base

    # ---- grid and PV
    service = params.site.service_limit_w / 1000.0
    dr_lim = dr_limits_w(inputs, n) / 1000.0
    data["dr_lim"] = dr_lim
    imp_ub = np.minimum(service, dr_lim)
    ix["imp"] = lp.cols(n, 0.0, imp_ub, p_imp * dt)
    bal = lp.rows(n, base, base)
    lp.coef(bal, ix["imp"], 1.0)
    at["imp_dr"] = np.flatnonzero(dr_lim < service)
    ix["imp_dr"] = lp.cols(
        at["imp_dr"].size,
        0.0,
        service - imp_ub[at["imp_dr"]],
        (p_imp[at["imp_dr"]] + s.dr_excess_per_kwh) * dt,
    )
    lp.coef(bal[at["imp_dr"]], ix["imp_dr"], 1.0)
    at["imp_sv"] = np.flatnonzero(base > service)
    ix["imp_sv"] = lp.cols(
        at["imp_sv"].size, 0.0, INF, (p_imp[at["imp_sv"]] + s.service_limit_excess_per_kwh) * dt
    )
    lp.coef(bal[at["imp_sv"]], ix["imp_sv"], 1.0)
    exp_lim_kw = (
        service if inputs.export_limit_w is None else min(service, max(inputs.export_limit_w, 0) / 1e3)
    )
    exp_lim = np.full(n, exp_lim_kw)
    gen_lim = np.full(n, INF)
    for w in inputs.dr_windows:  # a utility's export / generation limits (IEEE 2030.5) in their window
        s0, s1 = max(w.start_step, 0), max(min(w.end_step, n), 0)
        if w.export_cap_w is not None:
            exp_lim[s0:s1] = np.minimum(exp_lim[s0:s1], max(float(w.export_cap_w), 0.0) / 1e3)
        if w.generation_cap_w is not None:
            gen_lim[s0:s1] = np.minimum(gen_lim[s0:s1], max(float(w.generation_cap_w), 0.0) / 1e3)
    data["exp_lim"] = exp_lim
    # where import pays at least as much as export earns and export earns nothing (p_imp < p_exp <= 0),
    # exporting only ever wastes energy that curtailment or not discharging would keep: no export
    no_export = (p_exp <= 0.0) & (p_exp > p_imp + PRICE_EPS)
    ix["exp"] = lp.cols(n, 0.0, np.where(no_export, 0.0, exp_lim), -p_exp * dt)
    lp.coef(bal, ix["exp"], -1.0)
    inv = params.pv.inverter_ac_w / 1000.0
    data["inv"] = inv
    has_battery = params.battery.capacity_wh > 0
    pv_ub = pv_fc if has_battery or inv <= 0 else np.minimum(pv_fc, inv)
    pv_ub = np.minimum(pv_ub, gen_lim)
    ix["pv"] = lp.cols(n, 0.0, pv_ub, -s.pv_use_bonus_per_kwh * dt)
    lp.coef(bal, ix["pv"], 1.0)
    max_load = base.copy()  # upper bounds of consumption and generation, for tight big-Ms
    max_gen = pv_fc.copy()
    # where burning energy can pay: a negative import price now, or later (empty a store now to be paid
    # for refilling it then); only there can simultaneous charge/discharge or heat/cool be optimal
    negative = np.flatnonzero(p_imp < 0)
    neg = np.arange(negative[-1] + 1) if negative.size else negative

    # ---- battery
    bat = params.battery
    cap = bat.capacity_wh / 1000.0
    data["bat_cap"] = cap
    if has_battery:
        e0 = min(max(inputs.battery_soc_pct, 0.0), 100.0) / 100.0 * cap
        lo_hard = min(bat.min_soc_pct / 100.0 * cap, e0)
        hi_hard = max(bat.max_soc_pct / 100.0 * cap, e0)
        reserve = min(max(bat.reserve_soc_pct / 100.0 * cap, lo_hard), hi_hard)
        in_dr = np.zeros(n, dtype=bool)
        for w in inputs.dr_windows:
            in_dr[max(w.start_step, 0) : max(min(w.end_step, n), 0)] = True
        res_steps = np.flatnonzero(~in_dr) if reserve > lo_hard + 1e-9 else np.zeros(0, dtype=np.int64)
        value = s.terminal_value_per_kwh
        if value is None:
            value = max(float(p_imp.min()), 0.0) * bat.discharge_efficiency
        data["terminal_value"] = value
        sb_lb = np.full(n, lo_hard)
        sb_lb[res_steps] = reserve
        sb_cost = np.zeros(n)
        sb_cost[-1] = -value
        ix["bc"] = lp.cols(n, 0.0, bat.max_charge_w / 1000.0, s.battery_throughput_per_kwh * dt)
        ix["bd"] = lp.cols(n, 0.0, bat.max_discharge_w / 1000.0, s.battery_throughput_per_kwh * dt)
        ix["sb"] = lp.cols(n, sb_lb, hi_hard, sb_cost)
        rd_cost = np.full(res_steps.size, s.reserve_below_per_kwh_h * dt)
        if res_steps.size and res_steps[-1] == n - 1:
            rd_cost[-1] += value
        at["rd"] = res_steps
        ix["rd"] = lp.cols(res_steps.size, 0.0, reserve - lo_hard, rd_cost)
        data.update(e0=e0, reserve=reserve)
        rhs = np.zeros(n)
        rhs[0] = e0
        soc = lp.rows(n, rhs, rhs)
        lp.coef(soc, ix["sb"], 1.0)
        lp.coef(soc[1:], ix["sb"][:-1], -1.0)
        lp.coef(soc[res_steps], ix["rd"], -1.0)
        nxt = res_steps + 1 < n
        lp.coef(soc[res_steps[nxt] + 1], ix["rd"][nxt], 1.0)
        lp.coef(soc, ix["bc"], -bat.charge_efficiency * dt)
        lp.coef(soc, ix["bd"], dt / bat.discharge_efficiency)
        lp.coef(bal, ix["bc"], -1.0)
        lp.coef(bal, ix["bd"], 1.0)
        max_load += bat.max_charge_w / 1000.0
        max_gen += bat.max_discharge_w / 1000.0
        if inv > 0:
            max_gen = np.minimum(max_gen, inv)
        if inv > 0:
            row = lp.rows(n, -inv, inv)
            lp.coef(row, ix["pv"], 1.0)
            lp.coef(row, ix["bd"], 1.0)
            lp.coef(row, ix["bc"], -1.0)
        if neg.size:
            y = lp.cols(neg.size, 0.0, 1.0, 0.0, integer=True)
            r = lp.rows(neg.size, -INF, 0.0)
            lp.coef(r, ix["bc"][neg], 1.0)
            lp.coef(r, y, -bat.max_charge_w / 1000.0)
            r = lp.rows(neg.size, -INF, bat.max_discharge_w / 1000.0)
            lp.coef(r, ix["bd"][neg], 1.0)
            lp.coef(r, y, bat.max_discharge_w / 1000.0)
            ix["y_b"] = y

    # ---- EV
    ev = params.ev
    ev_cap = ev.capacity_wh / 1000.0
    ch_steps, dep = ev_charge_steps(inputs, n)
    data["ev_dep"] = dep
    at["ev"] = ch_steps
    ev_e0 = min(max(inputs.ev_soc_pct, 0.0), 100.0) / 100.0 * ev_cap
    data["ev_e0"] = ev_e0
    data["ev_cap"] = ev_cap
    data["ev_v2h"] = False
    if ch_steps.size and ev_cap > 0 and ev.charger_max_w > 0:
        eta = ev.charge_efficiency
        chmax = ev.charger_max_w / 1000.0
        target = min(max(inputs.ev_target_soc_pct, 0.0), 100.0) / 100.0 * ev_cap
        if dep is not None and dep > n:  # departure beyond the horizon: charge the rest later
            target -= (dep - n) * chmax * eta * dt
        v2h = bool(inputs.allow_ev_v2h and ev.v2h)
        data["ev_v2h"] = v2h
        floor = min(ev.capacity_wh * s.ev_v2h_floor_pct / 1e5, ev_e0)
        # shortfall bound: without V2H the SOC never falls, with it the SOC may fall to the floor
        need = max(target - (floor if v2h else ev_e0), 0.0)
        # tie-breaker: at equal prices charge sooner, since a car may leave before its planned departure
        ix["ec"] = lp.cols(ch_steps.size, 0.0, chmax, s.ev_late_cost_per_kwh * dt * ch_steps / max(n, 1))
        lp.coef(bal[ch_steps], ix["ec"], -1.0)
        max_load[ch_steps] += chmax
        ix["es"] = lp.cols(1 if need > 0 else 0, 0.0, need, s.ev_target_missed_per_kwh)
        if not v2h:
            if need > 0:
                r = lp.rows(1, need, INF)
                lp.coef(np.repeat(r, ch_steps.size), ix["ec"], eta * dt)
                lp.coef(r, ix["es"], 1.0)
            r = lp.rows(1, -INF, max(ev_cap - ev_e0, 0.0))
            lp.coef(np.repeat(r, ch_steps.size), ix["ec"], eta * dt)
        else:
            nc = ch_steps.size
            ix["ed"] = lp.cols(nc, 0.0, chmax, s.ev_v2h_throughput_per_kwh * dt)
            ix["ee"] = lp.cols(nc, floor, max(ev_cap, ev_e0), 0.0)
            lp.coef(bal[ch_steps], ix["ed"], 1.0)
            max_gen[ch_steps] += chmax
            rhs = np.zeros(nc)
            rhs[0] = ev_e0
            r = lp.rows(nc, rhs, rhs)
            lp.coef(r, ix["ee"], 1.0)
            lp.coef(r[1:], ix["ee"][:-1], -1.0)
            lp.coef(r, ix["ec"], -eta * dt)
            lp.coef(r, ix["ed"], dt / eta)
            if need > 0:
                r = lp.rows(1, target, INF)
                lp.coef(r, ix["ee"][-1:], 1.0)
                lp.coef(r, ix["es"], 1.0)
            negj = np.flatnonzero(ch_steps <= (negative[-1] if negative.size else -1))
            if negj.size:
                y = lp.cols(negj.size, 0.0, 1.0, 0.0, integer=True)
                r = lp.rows(negj.size, -INF, 0.0)
                lp.coef(r, ix["ec"][negj], 1.0)
                lp.coef(r, y, -chmax)
                r = lp.rows(negj.size, -INF, chmax)
                lp.coef(r, ix["ed"][negj], 1.0)
                lp.coef(r, y, chmax)
                ix["y_e"] = y
        # Energy the car still needs for a departure beyond the horizon is worth what the cheapest step of the
        # horizon costs (plus the tie-breaker), so the plan charges then rather than leaving it all to a later
        # plan that may see no cheap step before the car leaves. eb <= energy charged, eb <= the full need.
        full_need = max(min(max(inputs.ev_target_soc_pct, 0.0), 100.0) / 100.0 * ev_cap - ev_e0, 0.0)
        if (dep is None or dep > n) and full_need > 0:
            value = max(float(np.min(p_imp)), 0.0) + s.ev_late_cost_per_kwh
            ix["eb"] = lp.cols(1, 0.0, full_need, -value)
            data["ev_bank_value"] = value
            r = lp.rows(1, -INF, -ev_e0 if v2h else 0.0)
            lp.coef(r, ix["eb"], 1.0)
            if v2h:
                lp.coef(r, ix["ee"][-1:], -1.0)
            else:
                lp.coef(np.repeat(r, ch_steps.size), ix["ec"], -eta * dt)
    # ---- HVAC: 1R1C, exact discretisation
    hv = params.hvac
    r_th = hv.r_c_per_kw
    c_th = hv.c_kwh_per_c
    a = math.exp(-dt / (r_th * c_th)) if r_th > 0 and c_th > 0 else 0.0
    g = (1.0 - a) * r_th
    pmax = hv.max_power_w / 1000.0
    t0 = float(inputs.indoor_temp_c)
    lo_band = c_min
    hi_band = np.maximum(c_min, c_max)
    data.update(hvac_a=a, hvac_g=g)
    ix["tc"] = lp.cols(n, lo_band, hi_band, 0.0)
    ix["tl"] = lp.cols(n, 0.0, INF, s.comfort_per_degree_hour * dt)
    ix["th"] = lp.cols(n, 0.0, INF, s.comfort_per_degree_hour * dt)
    rhs = (1.0 - a) * t_out + g * hv.internal_gains_w / 1000.0
    rhs[0] += a * t0
    therm = lp.rows(n, rhs, rhs)
    for name, sign in (("tc", 1.0), ("tl", -1.0), ("th", 1.0)):
        lp.coef(therm, ix[name], sign)
        lp.coef(therm[1:], ix[name][:-1], -a * sign)
    heat = pmax > 0 and hv.cop_heating > 0
    cool = pmax > 0 and hv.cop_cooling > 0
    if heat:
        ix["hh"] = lp.cols(n, 0.0, pmax, s.hvac_use_cost_per_kwh * dt)
        lp.coef(therm, ix["hh"], -g * hv.cop_heating)
        lp.coef(bal, ix["hh"], -1.0)
    if cool:
        ix["hc"] = lp.cols(n, 0.0, pmax, s.hvac_use_cost_per_kwh * dt)
        lp.coef(therm, ix["hc"], g * hv.cop_cooling)
        lp.coef(bal, ix["hc"], -1.0)
    if heat and cool:
        r = lp.rows(n, -INF, pmax)
        lp.coef(r, ix["hh"], 1.0)
        lp.coef(r, ix["hc"], 1.0)
        if neg.size:
            y = lp.cols(neg.size, 0.0, 1.0, 0.0, integer=True)
            r = lp.rows(neg.size, -INF, 0.0)
            lp.coef(r, ix["hh"][neg], 1.0)
            lp.coef(r, y, -pmax)
            r = lp.rows(neg.size, -INF, pmax)
            lp.coef(r, ix["hc"][neg], 1.0)
            lp.coef(r, y, pmax)
            ix["y_h"] = y
    if pmax > 0:
        max_load += pmax

    # ---- water heater: tank energy balance, loss linear around ambient
    wp = params.water_heater
    c_w = wp.tank_l * WATER_KWH_PER_L_K
    data["tank_c"] = c_w
    if c_w > 0:
        ua = wp.loss_w_per_c / 1000.0
        b = math.exp(-ua * dt / c_w) if ua > 0 else 1.0
        f = (1.0 - b) / ua if ua > 0 else dt / c_w
        th0 = float(inputs.tank_temp_c)
        t_hi = max(wp.setpoint_c + s.tank_max_above_setpoint_c, th0)
        t_lo = min(wp.min_temp_c, t_hi)
        ix["tv"] = lp.cols(n, t_lo, t_hi, 0.0)
        ix["ts"] = lp.cols(n, 0.0, INF, s.tank_below_min_per_kwh_h * c_w * dt)
        rhs = (1.0 - b) * wp.ambient_c - f * draw / dt
        rhs[0] += b * th0
        tank = lp.rows(n, rhs, rhs)
        for name, sign in (("tv", 1.0), ("ts", -1.0)):
            lp.coef(tank, ix[name], sign)
            lp.coef(tank[1:], ix[name][:-1], -b * sign)
        if wp.power_w > 0:
            ix["wh"] = lp.cols(n, 0.0, wp.power_w / 1000.0, 0.0)
            lp.coef(tank, ix["wh"], -f)
            lp.coef(bal, ix["wh"], -1.0)
            max_load += wp.power_w / 1000.0

    # ---- deferrables
    p_min = float(p_imp.min())
    for d in inputs.deferrables:
        length, power = int(d.run_steps), d.power_w / 1000.0
        if length <= 0 or power <= 0:
            continue
        later = d.latest_end_step > n
        starts = np.arange(max(d.earliest_step, 0), min(d.latest_end_step, n) - length + 1)
        info = {"d": d, "starts": starts, "later": later, "u": np.zeros(0, np.int64), "m": None}
        m.deferrables.append(info)
        if starts.size == 0:
            if not later:
                lp.offset += s.deferrable_missed
                info["missed_const"] = True
            continue
        miss_cost = power * length * dt * max(p_min, 0.0) if later else s.deferrable_missed
        # u[i] = 1 if started at or before starts[i] (a step function): running at k is
        # u[i(k)] - u[i(k - L)], so each start costs a few nonzeros instead of L
        cnt, s0 = starts.size, int(starts[0])
        u = lp.cols(cnt, 0.0, 1.0, 0.0, integer=True)
        mm = lp.cols(1, 0.0, 1.0, miss_cost)
        if cnt > 1:
            r = lp.rows(cnt - 1, 0.0, INF)
            lp.coef(r, u[1:], 1.0)
            lp.coef(r, u[:-1], -1.0)
        r = lp.rows(1, 1.0, 1.0)
        lp.coef(r, u[-1:], 1.0)
        lp.coef(r, mm, 1.0)
        k = np.arange(s0, int(starts[-1]) + length)
        lp.coef(bal[k], u[np.minimum(k - s0, cnt - 1)], -power)
        off = k - length - s0 >= 0
        lp.coef(bal[k[off]], u[k[off] - length - s0], power)
        max_load[k] += power
        info["u"], info["m"], info["miss_cost"] = u, mm, miss_cost

    # ---- import/export exclusivity, only where exporting could pay for importing
    # (at equal prices the LP is indifferent and the decoder nets the two flows; elsewhere with
    # p_exp < p_imp importing to export loses money, so these binaries would be redundant)
    both = np.flatnonzero((p_exp > p_imp + PRICE_EPS) & (p_exp > 0.0))
    if both.size:
        y = lp.cols(both.size, 0.0, 1.0, 0.0, integer=True)
        r = lp.rows(both.size, -INF, 0.0)
        lp.coef(r, ix["imp"][both], 1.0)
        for name in ("imp_dr", "imp_sv"):
            k = at[name]
            hit = np.isin(k, both)
            lp.coef(r[np.searchsorted(both, k[hit])], ix[name][hit], 1.0)
        m_imp = np.where(base[both] > service, max_load[both], np.minimum(max_load[both], service))
        m_exp = np.clip(max_gen[both] - base[both], 0.0, exp_lim[both])
        lp.coef(r, y, -m_imp)
        r = lp.rows(both.size, -INF, m_exp)
        lp.coef(r, ix["exp"][both], 1.0)
        lp.coef(r, y, m_exp)
        # valid for every exclusive solution, and it cuts the relaxation's "import to export" flows:
        # export <= own generation (equivalently, import <= own consumption)
        r = lp.rows(both.size, -INF, 0.0)
        lp.coef(r, ix["exp"][both], 1.0)
        lp.coef(r, ix["pv"][both], -1.0)
        if "bd" in ix:
            lp.coef(r, ix["bd"][both], -1.0)
        if "ed" in ix:
            j = np.searchsorted(at["ev"], both)
            hit = (j < at["ev"].size) & (at["ev"][np.minimum(j, at["ev"].size - 1)] == both)
            lp.coef(r[hit], ix["ed"][j[hit]], -1.0)
        ix["y_g"] = y
        at["y_g"] = both

    m.arrays = lp.finish()
    m.offset = lp.offset
    return m
