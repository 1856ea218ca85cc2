"""The dashboard's data API: today's summary, history (power, energy, cost, savings), CSV export, the device
list with commissioning, and DR event detail. ``add_routes(app)`` wires it into ``web.app.create_app``.

History is read from the store's rollups (1-minute buckets for a day, 15-minute ones for a week or a month)
and priced with the tariff. "Savings against no control" is defined in :func:`no_control` and
:data:`SAVINGS_METHOD`; the arithmetic is in pure functions (numpy arrays in, numbers out) so that it is
tested without a running gateway.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from aiohttp import web

from hems.home import BatteryParams
from hems.model import Capability, Quantity
from hems.sim.devices import Battery
from web import RUNTIME

log = logging.getLogger(__name__)

RANGES = ("day", "week", "month")
_DAY_S = 86400.0
_EV_PLUGGED_MIN_W = 50.0  # a charger drawing more than this has a car plugged in, whatever it reports
# the counterfactual looks this far outside the range, so that an EV session or the battery's state of charge
# crossing midnight is judged as a whole
_MARGIN_S = _DAY_S
# devices that report on change (Zigbee attribute reporting) stay silent while a value holds: a value counts
# until the next one for up to this long, after that the time has no data
HOLD_S = 900.0

SAVINGS_METHOD = (
    "Savings = cost without control − actual cost. Actual cost: for every minute (day view) or 15 minutes "
    "(week and month views), the energy bought from the grid times the import price at that time, minus the "
    "energy sold times the export price, from the meter's average power. Cost without control: the same home "
    "with the same solar production and the same use by appliances, heating/cooling and water heater, but with "
    "the battery in its own self-consumption mode (it charges only from spare solar and discharges to cover "
    "the home) and the EV charging at full power from the moment it is plugged in until it has the same "
    "energy: what the devices do without the gateway. When the two batteries end up holding different amounts of "
    "energy, the difference counts at the average export price (what it could be sold for). Both are priced with the current tariff."
)


# ------------------------------------------------------------------------------------------------------------
# pure arithmetic


@dataclass
class Steps:
    """Metered averages on a regular grid: ``ts[i]`` starts step ``i`` of ``step_s`` seconds. NaN = no data.
    A step without a reading of its own holds the last value for up to :data:`HOLD_S`.

    Signs as in ``hems.model``: grid + import; battery + charging; PV and EV >= 0 (EV < 0 is V2H)."""

    ts: np.ndarray
    step_s: float
    grid_w: np.ndarray
    pv_w: np.ndarray
    battery_w: np.ndarray
    ev_w: np.ndarray
    ev_plugged: np.ndarray  # share of the step the car was plugged in, 0..1
    soc_pct: np.ndarray

    @property
    def home_w(self) -> np.ndarray:
        """Everything the home used except the battery and the EV (appliances, HVAC, water heater)."""
        return self.grid_w + _z(self.pv_w) - _z(self.battery_w) - _z(self.ev_w)


def _z(a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(a, nan=0.0)


def ev_sessions(plugged: np.ndarray, ev_w: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, last + 1)]`` step index ranges during which a car was plugged in (reported, or drawing)."""
    on = (np.nan_to_num(plugged, nan=0.0) >= 0.5) | (np.nan_to_num(ev_w, nan=0.0) > _EV_PLUGGED_MIN_W)
    out, start = [], None
    for i, v in enumerate(on):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(on)))
    return out


def ev_uncontrolled_w(steps: Steps, charger_max_w: float) -> np.ndarray:
    """The EV without control: each plug-in session gets the net energy it actually got, charged at full
    power (the charger's rating, or the highest power seen if that is more) from the start of the session."""
    ev = _z(steps.ev_w)
    max_w = max(float(charger_max_w), float(ev.max(initial=0.0)))
    h = steps.step_s / 3600.0
    out = np.zeros_like(ev)
    if max_w <= 0:
        return out
    for a, b in ev_sessions(steps.ev_plugged, steps.ev_w):
        left_wh = max(float(ev[a:b].sum()) * h, 0.0)
        for i in range(a, b):
            if left_wh <= 1e-9:
                break
            w = min(max_w, left_wh / h)
            out[i] = w
            left_wh -= w * h
    return out


def no_control(steps: Steps, battery: BatteryParams, ev_charger_max_w: float) -> dict[str, np.ndarray]:
    """Grid, battery and EV power of the same home without the gateway (see :data:`SAVINGS_METHOD`).

    The home's own use (``steps.home_w``) and the PV are kept as metered; the EV is moved to the start of its
    sessions; the battery runs its self-consumption mode from the state of charge metered at the first step
    that has one. Steps without a grid reading stay NaN."""
    ev_nc = ev_uncontrolled_w(steps, ev_charger_max_w)
    home = steps.home_w
    pv = _z(steps.pv_w)
    soc = steps.soc_pct[np.isfinite(steps.soc_pct)]
    has_battery = bool(np.isfinite(steps.battery_w).any())
    bat = Battery(battery, soc_pct=float(soc[0]) if soc.size else None) if has_battery else None
    bat_nc = np.zeros_like(pv)
    grid_nc = np.full_like(pv, np.nan)
    stored_wh = np.zeros_like(pv)  # what the battery holds at the end of each step
    for i in range(pv.size):
        if math.isfinite(home[i]):
            net = home[i] + ev_nc[i] - pv[i]
            if bat is not None:
                bat_nc[i] = bat.self_consumption(steps.step_s, net)
            grid_nc[i] = net + bat_nc[i]
        stored_wh[i] = bat.soc_wh if bat is not None else 0.0
    return {"grid_w": grid_nc, "battery_w": bat_nc, "ev_w": ev_nc, "stored_wh": stored_wh}


def stored_change_wh(soc_pct: np.ndarray, capacity_wh: float) -> np.ndarray:
    """Per step, the change of the energy the metered battery holds (from its state of charge at the start of
    this step to the start of the next; 0 where unknown)."""
    stored = soc_pct / 100.0 * capacity_wh
    nxt = np.append(stored[1:], stored[-1:]) if stored.size else stored
    return np.nan_to_num(nxt - stored, nan=0.0)


def grid_cost(
    grid_w: np.ndarray, import_price: np.ndarray, export_price: np.ndarray, step_s: float
) -> dict[str, np.ndarray]:
    """Per step: ``import_kwh``, ``export_kwh`` and ``cost`` (import × import price − export × export price).
    A step without a grid value costs 0 and counts no energy."""
    g = _z(grid_w)
    h = step_s / 3600.0
    imp = np.maximum(g, 0.0) * h / 1000.0
    exp = np.maximum(-g, 0.0) * h / 1000.0
    return {"import_kwh": imp, "export_kwh": exp, "cost": imp * import_price - exp * export_price}


ENERGY_KEYS = (
    "import_kwh",
    "export_kwh",
    "pv_kwh",
    "home_kwh",
    "ev_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
)
MONEY_KEYS = ("cost", "cost_no_control", "savings")


def step_table(
    steps: Steps,
    import_price: np.ndarray,
    export_price: np.ndarray,
    battery: BatteryParams,
    ev_charger_max_w: float,
) -> dict[str, np.ndarray]:
    """Everything per step: energies (kWh), actual cost, cost without control and the savings."""
    h = steps.step_s / 3600.0 / 1000.0
    actual = grid_cost(steps.grid_w, import_price, export_price, steps.step_s)
    nc = no_control(steps, battery, ev_charger_max_w)
    counter = grid_cost(nc["grid_w"], import_price, export_price, steps.step_s)
    known = np.isfinite(steps.grid_w)
    # the two batteries end up holding different energy: it counts at the mean export price (what it could have
    # been sold for), so that energy stored now is not counted as lost before it is used (conservative: using
    # it later is worth at least that)
    first_soc = steps.soc_pct[np.isfinite(steps.soc_pct)]
    start_wh = first_soc[0] / 100.0 * battery.capacity_wh if first_soc.size else 0.0
    nc_change_wh = np.diff(np.concatenate(([start_wh], nc["stored_wh"])))
    act_change_wh = stored_change_wh(steps.soc_pct, battery.capacity_wh)
    ref_price = float(np.mean(export_price)) if export_price.size else 0.0
    storage_value = ref_price * (nc_change_wh - act_change_wh) / 1000.0
    bat = _z(steps.battery_w)
    table = {
        "import_kwh": actual["import_kwh"],
        "export_kwh": actual["export_kwh"],
        "pv_kwh": np.where(known, np.maximum(_z(steps.pv_w), 0.0) * h, 0.0),
        "home_kwh": np.where(known, np.maximum(_z(steps.home_w), 0.0) * h, 0.0),
        "ev_kwh": np.where(known, np.maximum(_z(steps.ev_w), 0.0) * h, 0.0),
        "battery_charge_kwh": np.where(known, np.maximum(bat, 0.0) * h, 0.0),
        "battery_discharge_kwh": np.where(known, np.maximum(-bat, 0.0) * h, 0.0),
        "cost": np.where(known, actual["cost"], 0.0),
        "cost_no_control": np.where(known, counter["cost"] - storage_value, 0.0),
        "grid_no_control_w": nc["grid_w"],
        "known": known,
    }
    table["savings"] = table["cost_no_control"] - table["cost"]
    return table


def sum_by(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Sums of ``values`` per group ``index`` (0..n-1); steps with index outside that range are ignored."""
    ok = (index >= 0) & (index < n)
    return np.bincount(index[ok], weights=values[ok], minlength=n)[:n]


def mean_by(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """NaN-aware means per group; NaN where a group has no value."""
    ok = (index >= 0) & (index < n) & np.isfinite(values)
    total = np.bincount(index[ok], weights=values[ok], minlength=n)[:n]
    count = np.bincount(index[ok], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _num(v: float, nd: int) -> float | None:
    return round(float(v), nd) if math.isfinite(v) else None


def _nums(a: np.ndarray, nd: int) -> list[float | None]:
    return [_num(v, nd) for v in a]


# ------------------------------------------------------------------------------------------------------------
# ranges in the home's local time


def parse_range(query: dict, today: date) -> tuple[str, date]:
    """``range`` (day|week|month, default day) and ``date`` (local YYYY-MM-DD, default today); ValueError
    names the parameter."""
    rng = query.get("range", "day")
    if rng not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, got {rng!r}")
    raw = query.get("date")
    if raw is None or raw == "":
        return rng, today
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"date must be a local date YYYY-MM-DD, got {raw!r}") from None
    if day.year < 2000 or day > today + timedelta(days=366):
        raise ValueError(f"date {raw!r} is out of range (2000-01-01 to a year from today)")
    return rng, day


def range_days(rng: str, day: date) -> tuple[date, date]:
    """First day and the day after the last: a day; the 7 days ending with ``day``; ``day``'s calendar month."""
    if rng == "day":
        return day, day + timedelta(days=1)
    if rng == "week":
        return day - timedelta(days=6), day + timedelta(days=1)
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt


def _midnight(d: date, tz: ZoneInfo) -> float:
    return datetime.combine(d, time(0), tz).timestamp()


def period_edges(rng: str, first: date, after: date, tz: ZoneInfo) -> tuple[list[float], list[str]]:
    """Start of each bar (hours of a day, days of a week or month) and its label, plus the end as last edge."""
    if rng == "day":
        start, end = _midnight(first, tz), _midnight(after, tz)
        edges = [start + k * 3600.0 for k in range(int(round((end - start) / 3600.0)))] + [end]
        labels = [datetime.fromtimestamp(t, tz).strftime("%H:%M") for t in edges[:-1]]
        return edges, labels
    days = [first + timedelta(days=k) for k in range((after - first).days)]
    edges = [_midnight(d, tz) for d in days] + [_midnight(after, tz)]
    labels = [d.strftime("%a %d %b") for d in days]
    return edges, labels


def range_label(rng: str, first: date, after: date) -> str:
    last = after - timedelta(days=1)
    if rng == "day":
        return first.strftime("%A %d %B %Y")
    if rng == "week":
        return f"{first.strftime('%a %d %b')} – {last.strftime('%a %d %b %Y')}"
    return first.strftime("%B %Y")


# ------------------------------------------------------------------------------------------------------------
# reading the store


def _runtime(request: web.Request):
    return request.app[RUNTIME]


def _tariff(runtime):
    """The tariff in force now (the settings may have replaced the configured one)."""
    return getattr(runtime, "tariff", None) or runtime.config.tariff


def _home(runtime):
    return getattr(runtime, "home", None) or runtime.config.home


def _device_ids(runtime, capability: Capability) -> list[str]:
    return sorted(d.info.device_id for d in runtime.bus.devices(capability))


def _grid(store, ids: list[str], quantity: str, ts: np.ndarray, step_s: float, res: str) -> np.ndarray:
    """Sum over devices of each device's bucket average; NaN where no device had a value."""
    total = np.full(ts.size, np.nan)
    if not ts.size:
        return total
    t0 = float(ts[0])
    for device_id in ids:
        rows = store.series(device_id, quantity, t0, float(ts[-1]) + step_s, res)
        if not rows:
            continue
        idx = ((np.array([r[0] for r in rows]) - t0) // step_s).astype(int)
        vals = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=float)
        ok = (idx >= 0) & (idx < ts.size) & np.isfinite(vals)
        col = _hold(np.full(ts.size, np.nan), idx[ok], vals[ok], max(1, int(HOLD_S // step_s)))
        total = np.where(np.isnan(total), col, np.where(np.isnan(col), total, total + col))
    return total


def _hold(col: np.ndarray, idx: np.ndarray, vals: np.ndarray, limit: int) -> np.ndarray:
    """``col`` with ``vals`` at ``idx``, each value held for up to ``limit`` steps after it."""
    col[idx] = vals
    last, age = np.nan, limit + 1
    for i in range(col.size):
        if math.isfinite(col[i]):
            last, age = col[i], 0
        else:
            age += 1
            if age <= limit:
                col[i] = last
    return col


def load_steps(runtime, start_ts: float, end_ts: float, step_s: float) -> Steps:
    """Metered averages of the home's devices on a regular grid from the store's rollups."""
    res = "1m" if step_s == 60 else "15m"
    first = math.floor(start_ts / step_s) * step_s
    ts = np.arange(first, end_ts, step_s, dtype=float)
    store = runtime.store
    meters = _device_ids(runtime, Capability.GRID_METER) or ([m] if (m := _find_meter(store)) else [])
    pv = _device_ids(runtime, Capability.PV_INVERTER)
    bats = _device_ids(runtime, Capability.BATTERY)
    evs = _device_ids(runtime, Capability.EV_CHARGER)
    return Steps(
        ts=ts,
        step_s=step_s,
        grid_w=_grid(store, meters, Quantity.GRID_POWER_W, ts, step_s, res),
        pv_w=_grid(store, pv, Quantity.PV_POWER_W, ts, step_s, res),
        battery_w=_grid(store, bats, Quantity.BATTERY_POWER_W, ts, step_s, res),
        ev_w=_grid(store, evs, Quantity.POWER_W, ts, step_s, res),
        ev_plugged=_grid(store, evs, Quantity.EV_PLUGGED, ts, step_s, res),
        soc_pct=_grid(store, bats[:1], Quantity.SOC_PCT, ts, step_s, res),
    )


def _find_meter(store) -> str | None:
    from hems.baseline import find_meter

    return find_meter(store)


def _today(runtime) -> tuple[date, ZoneInfo, float]:
    tz = ZoneInfo(runtime.config.home.site.timezone)
    now = runtime.clock.now()
    return datetime.fromtimestamp(now, tz).date(), tz, now


def history(runtime, rng: str, day: date) -> tuple[dict, Steps, dict]:
    """The history document of one range, and the per-step data it was made from (for the CSV)."""
    today, tz, now = _today(runtime)
    first, after = range_days(rng, day)
    start, end = _midnight(first, tz), _midnight(after, tz)
    retention_s = runtime.store.rollup_1m_retention_days * _DAY_S
    step_s = 60.0 if rng == "day" and start >= now - retention_s + _MARGIN_S else 900.0
    until = min(end + _MARGIN_S, now)
    steps = load_steps(runtime, start - _MARGIN_S, max(until, start), step_s)
    tariff = _tariff(runtime)
    imp, exp, _names = tariff.prices_at(steps.ts) if steps.ts.size else (np.empty(0), np.empty(0), [])
    home = _home(runtime)
    table = step_table(steps, imp, exp, home.battery, home.ev.charger_max_w)
    inside = (steps.ts >= start) & (steps.ts < end)

    edges, labels = period_edges(rng, first, after, tz)
    n = len(labels)
    pidx = np.searchsorted(np.array(edges), steps.ts, side="right") - 1
    pidx = np.where(inside, pidx, -1)
    periods: dict = {"ts": edges[:-1], "label": labels}
    for key in (*ENERGY_KEYS, *MONEY_KEYS):
        periods[key] = _nums(sum_by(table[key], pidx, n), 4 if key in MONEY_KEYS else 3)
    has_data = sum_by(table["known"].astype(float), pidx, n) > 0
    for key in (*ENERGY_KEYS, *MONEY_KEYS):  # a bar with no metered minute is "no data", not 0
        periods[key] = [v if ok else None for v, ok in zip(periods[key], has_data, strict=True)]

    chart_step = {"day": 300.0, "week": 3600.0, "month": 3600.0}[rng]
    cidx = np.where(inside, ((steps.ts - start) // chart_step).astype(int), -1)
    nc = max(int(math.ceil((end - start) / chart_step)), 0)
    power = {"step_s": chart_step, "ts": [start + k * chart_step for k in range(nc)]}
    for key, arr in (
        ("grid_w", steps.grid_w),
        ("pv_w", steps.pv_w),
        ("battery_w", steps.battery_w),
        ("home_w", np.where(np.isfinite(steps.grid_w), np.maximum(steps.home_w, 0.0), np.nan)),
        ("ev_w", steps.ev_w),
        ("grid_no_control_w", table["grid_no_control_w"]),
    ):
        power[key] = _nums(mean_by(arr, cidx, nc), 0)
    power["soc_pct"] = _nums(mean_by(steps.soc_pct, cidx, nc), 1)

    elapsed = inside & (steps.ts < now)
    totals: dict = {
        key: _num(float(table[key][inside].sum()), 4 if key in MONEY_KEYS else 3)
        for key in (*ENERGY_KEYS, *MONEY_KEYS)
    }
    # share of what the home and the EV used that was not bought from the grid
    imp_kwh = totals["import_kwh"] or 0.0
    used = (totals["home_kwh"] or 0.0) + (totals["ev_kwh"] or 0.0)
    totals["self_sufficiency_pct"] = _num(100.0 * max(0.0, 1.0 - imp_kwh / used), 1) if used > 0 else None
    doc = {
        "range": rng,
        "date": day.isoformat(),
        "first_day": first.isoformat(),
        "last_day": (after - timedelta(days=1)).isoformat(),
        "label": range_label(rng, first, after),
        "previous_date": (first - timedelta(days=1)).isoformat(),
        "next_date": None
        if after > today
        else min(day + timedelta(days=7) if rng == "week" else after, today).isoformat(),
        "start_ts": start,
        "end_ts": end,
        "now_ts": now,
        "timezone": str(tz),
        "currency": tariff.currency,
        "resolution_s": step_s,
        "coverage_pct": _num(100.0 * float(table["known"][elapsed].mean()), 1) if elapsed.any() else None,
        "power": power,
        "periods": periods,
        "totals": totals,
        "savings_method": SAVINGS_METHOD,
    }
    return doc, steps, {"table": table, "import_price": imp, "export_price": exp, "inside": inside}


# ------------------------------------------------------------------------------------------------------------
# handlers


def _error(message: str, status: int = 400, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _store_or_503(runtime) -> web.Response | None:
    if runtime.store is None:
        return _error("the gateway is still starting; try again in a few seconds", 503)
    return None


async def api_history(request: web.Request) -> web.Response:
    """Power, energy, cost and savings for a day, a week or a month (local time)."""
    runtime = _runtime(request)
    if (resp := _store_or_503(runtime)) is not None:
        return resp
    today, _tz, _now = _today(runtime)
    try:
        rng, day = parse_range(dict(request.query), today)
    except ValueError as exc:
        return _error(str(exc))
    doc, _steps, _extra = history(runtime, rng, day)
    return web.json_response(doc)


CSV_COLUMNS = (
    "local_time",
    "ts",
    "grid_w",
    "pv_w",
    "battery_w",
    "home_w",
    "ev_w",
    "battery_soc_pct",
    "import_price_per_kwh",
    "export_price_per_kwh",
    "import_kwh",
    "export_kwh",
    "cost",
    "grid_no_control_w",
    "cost_no_control",
)


def history_csv(doc: dict, steps: Steps, extra: dict) -> str:
    """One row per metered step inside the range (minutes for a day, quarter hours otherwise)."""
    tz = ZoneInfo(doc["timezone"])
    table = extra["table"]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)

    def f(v: float, nd: int = 1) -> str:
        return "" if not math.isfinite(v) else f"{v:.{nd}f}"

    home = steps.home_w
    for i in np.flatnonzero(extra["inside"] & table["known"]):
        ts = float(steps.ts[i])
        w.writerow(
            [
                datetime.fromtimestamp(ts, tz).isoformat(timespec="minutes"),
                f"{ts:.0f}",
                f(steps.grid_w[i]),
                f(steps.pv_w[i]),
                f(steps.battery_w[i]),
                f(max(home[i], 0.0)),
                f(steps.ev_w[i]),
                f(steps.soc_pct[i], 2),
                f(extra["import_price"][i], 4),
                f(extra["export_price"][i], 4),
                f(table["import_kwh"][i], 5),
                f(table["export_kwh"][i], 5),
                f(table["cost"][i], 5),
                f(table["grid_no_control_w"][i]),
                f(table["cost_no_control"][i], 5),
            ]
        )
    return out.getvalue()


async def api_history_csv(request: web.Request) -> web.Response:
    """The same range as /api/history as CSV, one row per metered minute (day) or quarter hour."""
    runtime = _runtime(request)
    if (resp := _store_or_503(runtime)) is not None:
        return resp
    today, _tz, _now = _today(runtime)
    try:
        rng, day = parse_range(dict(request.query), today)
    except ValueError as exc:
        return _error(str(exc))
    doc, steps, extra = history(runtime, rng, day)
    name = f"hems-{rng}-{doc['first_day']}.csv"
    return web.Response(
        text=history_csv(doc, steps, extra),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _tariff_now(runtime, now: float) -> dict:
    tariff = _tariff(runtime)
    point = tariff.at(now)
    out = {
        "period": point.period,
        "import_price_per_kwh": point.import_price_per_kwh,
        "export_price_per_kwh": point.export_price_per_kwh,
        "currency": tariff.currency,
        "until_ts": None,
        "next": None,
    }
    nxt = tariff.next_change(now)
    if math.isfinite(nxt):
        p = tariff.at(nxt)
        out["until_ts"] = nxt
        out["next"] = {
            "period": p.period,
            "import_price_per_kwh": p.import_price_per_kwh,
            "export_price_per_kwh": p.export_price_per_kwh,
        }
    return out


def _dr_brief(ev, now: float) -> dict:
    d = ev.to_json()
    return {
        "key": d["key"],
        "source": d["source"],
        "state": d["state"],
        "objective": d["objective"],
        "level": d["level"],
        "start_ts": d["effective_start_ts"],
        "end_ts": d["end_ts"],
        "active": d["state"] == "active",
        "can_opt_out": d["state"] in ("pending", "active") and d["opt"] == "opt_in",
        "test_event": d["test_event"],
    }


async def api_summary(request: web.Request) -> web.Response:
    """What the overview shows besides the live flow: today's energy, cost and savings; the tariff now and
    next; DR events that are on or coming; what the controller is doing."""
    runtime = _runtime(request)
    if (resp := _store_or_503(runtime)) is not None:
        return resp
    today, _tz, now = _today(runtime)
    doc, _steps, _extra = history(runtime, "day", today)
    dr = runtime.dr
    events = [_dr_brief(e, now) for e in dr.events(include_terminal=False)] if dr else []
    controller = runtime.controller.status.to_json() if runtime.controller else None
    return web.json_response(
        {
            "date": today.isoformat(),
            "now_ts": now,
            "timezone": doc["timezone"],
            "currency": doc["currency"],
            "today": doc["totals"],
            "coverage_pct": doc["coverage_pct"],
            "tariff": _tariff_now(runtime, now),
            "dr_events": events,
            "controller": controller,
            "savings_method": SAVINGS_METHOD,
        }
    )


def _commission_actions(runtime) -> list[dict]:
    fn = getattr(runtime, "commission_actions", None)
    if fn is None:
        return []
    try:
        return list(fn())
    except Exception:  # one broken integration must not hide the device list
        log.exception("listing commissioning actions failed")
        return []


def _faults(runtime, device_id: str) -> list[dict]:
    """The device's last few fault events from the store (newest last)."""
    try:
        rows = runtime.store.events(kind="device_fault", ref=device_id, limit=5)
    except Exception:
        return []
    return [
        {"ts": r["ts"], **(r["data"] if isinstance(r["data"], dict) else {"message": r["data"]})}
        for r in rows
    ]


async def api_devices(request: web.Request) -> web.Response:
    """Every device: status, when it was last heard from, faults, firmware and latest readings; and what the
    installer can do to add or pair devices (``actions``)."""
    runtime = _runtime(request)
    status = runtime.status()
    devices = []
    for d in status["devices"]:
        seen = [r["ts"] for r in d["readings"].values() if isinstance(r.get("ts"), int | float)]
        devices.append(
            {
                **d,
                "last_seen_ts": max(seen) if seen else None,
                "firmware": d.get("firmware"),
                "faults": _faults(runtime, d["device_id"]) if runtime.store is not None else [],
            }
        )
    return web.json_response(
        {"now_ts": status["gateway"]["time"], "devices": devices, "actions": _commission_actions(runtime)}
    )


async def api_device_actions(request: web.Request) -> web.Response:
    """The commissioning actions the integrations offer (pair Zigbee, add a SunSpec inverter, enrol a charger)."""
    return web.json_response({"actions": _commission_actions(_runtime(request))})


def _require(request: web.Request, *roles: str) -> None:
    try:
        from web.auth import require_role
    except ImportError:  # pragma: no cover - before the login existed
        return
    require_role(request, *roles)


async def api_device_action(request: web.Request) -> web.Response:
    """Run one commissioning action; the body is the action's parameters as a JSON object."""
    _require(request, "owner", "installer")
    runtime = _runtime(request)
    integration, action = request.match_info["integration"], request.match_info["action"]
    known = {(a.get("integration"), a.get("action")): a for a in _commission_actions(runtime)}
    if (integration, action) not in known:
        offered = ", ".join(f"{i}/{a}" for i, a in sorted(known)) or "none"
        return _error(f"no commissioning action {integration}/{action}; offered: {offered}", 404)
    params: dict = {}
    if request.can_read_body:
        try:
            params = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error('body must be a JSON object of the action\'s parameters, e.g. {"duration_s": 120}')
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return _error("body must be a JSON object of the action's parameters")
    try:
        result = await runtime.commission(integration, action, params)
    except (ValueError, TypeError) as exc:
        return _error(str(exc))
    except Exception as exc:  # the device or network failed: say so, keep serving
        log.exception("commissioning %s/%s failed", integration, action)
        return _error(f"{integration}/{action} failed: {exc}", 502)
    return web.json_response({"integration": integration, "action": action, "result": result})


async def api_dr_event(request: web.Request) -> web.Response:
    """One DR event: its current version, every version received, and its verification report (baseline vs
    metered per 15 minutes, kW shed). A running event gets a provisional report of what happened so far."""
    runtime = _runtime(request)
    dr = runtime.dr
    key = request.match_info["key"]
    ev = dr.get(key) if dr is not None else None
    if ev is None:
        return _error(f"no DR event {key!r}", 404)
    now = runtime.clock.now()
    report, provisional = ev.report, False
    if report is None and ev.actuated_ts is not None:
        try:
            report, provisional = dr.report_for(ev, now), True
        except Exception as exc:
            log.exception("DR %s: provisional report failed", key)
            report, provisional = {"error": str(exc), "intervals": []}, True
    return web.json_response(
        {
            "event": ev.to_json(),
            "summary": _dr_brief(ev, now),
            "versions": [v.to_json() for v in dr.history(key)],
            "report": report,
            "report_provisional": provisional,
            "now_ts": now,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/summary", api_summary)
    app.router.add_get("/api/history", api_history)
    app.router.add_get("/api/history.csv", api_history_csv)
    app.router.add_get("/api/devices", api_devices)
    app.router.add_get("/api/devices/actions", api_device_actions)
    app.router.add_post("/api/devices/actions/{integration}/{action}", api_device_action)
    app.router.add_get("/api/dr/{key}", api_dr_event)


__all__ = [
    "SAVINGS_METHOD",
    "Steps",
    "add_routes",
    "ev_sessions",
    "ev_uncontrolled_w",
    "grid_cost",
    "history_csv",
    "no_control",
    "parse_range",
    "range_days",
    "step_table",
]
