"""The reference home's rule table: the ``rules`` strategy the planner must beat.

Pure functions of the measured state and the tariff. Price periods are classed by price, not by name,
so the rules work for any TOU tariff: ``cheap`` (within the lowest quarter of the tariff's price range),
``peak`` (within the highest quarter) and ``mid`` (the rest).

| when              | battery                                   | EV                          | water heater |
|-------------------|-------------------------------------------|-----------------------------|--------------|
| weekday cheap     | charge at full power to 100 %             | charge to the target (80 %) | on           |
| weekday mid       | charge from PV surplus only, no discharge | PV surplus left after the battery | on     |
| weekday peak      | discharge to cover the home, down to the reserve (>= 20 %) | paused     | deferred (unless the tank is below its minimum) |
| weekend (any)     | held: PV surplus is exported              | charge to the target        | on           |

Energy priority when no rule says otherwise: solar self-use > battery charge > loads > export (PV
covers the home first because the meter nets it). Every decision is then limited to the service limit:
the EV gives way first, then the battery.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from .home import HomeParams
from .tariff import Tariff, TariffPoint

PEAK_RESERVE_MIN_PCT = 20.0  # the rule table discharges to 20 % at the lowest


@dataclass(frozen=True, slots=True)
class HomeState:
    """What the controller measured last. home_load_w is everything but the battery and the EV."""

    ts: float
    pv_power_w: float
    home_load_w: float
    battery_soc_pct: float
    ev_plugged: bool = False
    ev_soc_pct: float | None = None
    ev_power_w: float = 0.0
    tank_temp_c: float | None = None
    indoor_temp_c: float | None = None
    outdoor_temp_c: float | None = None
    hvac_power_w: float = 0.0
    water_heater_power_w: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    battery_charge_power_w: float | None  # None = battery's own self-consumption mode
    ev_power_limit_w: float | None  # None = no limit (charger maximum)
    water_heater_enabled: bool
    pv_limit_w: float | None = None
    period: str = ""
    reasons: tuple[str, ...] = ()
    hvac_mode: str | None = None  # None = leave the thermostat as it is
    heat_setpoint_c: float | None = None
    cool_setpoint_c: float | None = None
    # When set, the battery holds the grid at grid_target_w within [battery_min_w, battery_max_w]; live, the
    # controller does this by re-deciding every few seconds; the fast simulation hands it to the physics.
    grid_target_w: float | None = None
    battery_min_w: float = -float("inf")
    battery_max_w: float = float("inf")


def price_class(point: TariffPoint, min_price: float, max_price: float) -> str:
    span = max_price - min_price
    if span <= 1e-9:
        return "mid"
    if point.import_price_per_kwh <= min_price + 0.25 * span:
        return "cheap"
    if point.import_price_per_kwh >= max_price - 0.25 * span:
        return "peak"
    return "mid"


def is_weekend(ts: float, timezone: str) -> bool:
    return datetime.fromtimestamp(ts, ZoneInfo(timezone)).weekday() >= 5


def no_control() -> Decision:
    """The 'none' strategy: every device on its own defaults (battery self-consumption, EV at full power)."""
    return Decision(None, None, True, None, "", ("no control: devices run on their own defaults",))


def rules_decision(
    state: HomeState, point: TariffPoint, *, klass: str, weekend: bool, params: HomeParams
) -> Decision:
    b, ev, wh = params.battery, params.ev, params.water_heater
    surplus_w = state.pv_power_w - state.home_load_w
    reasons: list[str] = []
    ev_wants = state.ev_plugged and (state.ev_soc_pct is None or state.ev_soc_pct < ev.target_soc_pct)
    water_heater_enabled = True

    if weekend:
        battery = 0.0
        reasons.append(f"weekend {point.period}: battery held, PV surplus exported")
        ev_limit = ev.charger_max_w if ev_wants else 0.0
        if ev_wants:
            reasons.append(f"EV charging to {ev.target_soc_pct:.0f} %")
    elif klass == "cheap":
        battery = b.max_charge_w if state.battery_soc_pct < b.max_soc_pct - 0.5 else 0.0
        reasons.append(
            f"{point.period}: charging battery to {b.max_soc_pct:.0f} %"
            if battery
            else f"{point.period}: battery full"
        )
        ev_limit = ev.charger_max_w if ev_wants else 0.0
        if ev_wants:
            reasons.append(f"EV charging to {ev.target_soc_pct:.0f} %")
    elif klass == "peak":
        reserve = max(PEAK_RESERVE_MIN_PCT, b.reserve_soc_pct)
        ev_limit = 0.0
        if state.battery_soc_pct > reserve:
            battery = surplus_w  # follow the net load: discharge to cover the home, absorb any PV surplus
            reasons.append(f"{point.period}: battery covers the home down to {reserve:.0f} %")
        else:
            battery = max(0.0, surplus_w)
            reasons.append(f"{point.period}: battery at reserve {reserve:.0f} %")
        if state.ev_plugged:
            reasons.append("EV paused until the price falls")
        if state.tank_temp_c is not None and state.tank_temp_c < wh.min_temp_c:
            reasons.append("water heater on: tank below its minimum")
        else:
            water_heater_enabled = False
            reasons.append("water heater deferred")
    else:  # mid
        battery = 0.0
        ev_limit = 0.0
        if surplus_w > 0 and state.battery_soc_pct < b.max_soc_pct - 0.5:
            battery = min(surplus_w, b.max_charge_w)
            reasons.append(f"{point.period}: battery charging from PV surplus")
        left_w = surplus_w - battery  # home_load_w excludes the EV, so this is what is left for it
        if (
            state.ev_plugged
            and (state.ev_soc_pct is None or state.ev_soc_pct < 100.0)
            and left_w >= ev.charger_min_w
        ):
            ev_limit = min(left_w, ev.charger_max_w)
            reasons.append("EV charging from PV surplus")
        if not reasons:
            reasons.append(f"{point.period}: self-consumption, battery kept for the peak")

    battery = max(-b.max_discharge_w, min(b.max_charge_w, battery))
    decision = Decision(battery, ev_limit, water_heater_enabled, None, point.period, tuple(reasons))
    return limit_to_service(decision, state, params)


def limit_to_service(decision: Decision, state: HomeState, params: HomeParams) -> Decision:
    """Cut the EV, then the battery's charge, so that planned import stays within the service limit."""
    limit_w = params.site.service_limit_w
    ev_w = params.ev.charger_max_w if decision.ev_power_limit_w is None else decision.ev_power_limit_w
    ev_w = ev_w if state.ev_plugged else 0.0
    batt_w = max(0.0, decision.battery_charge_power_w or 0.0)
    excess_w = state.home_load_w + ev_w + batt_w - state.pv_power_w - limit_w
    if excess_w <= 0:
        return decision
    reasons = [*decision.reasons, f"service limit {limit_w / 1000:.1f} kW: loads reduced"]
    cut_ev = min(ev_w, excess_w)
    new_ev = ev_w - cut_ev
    if 0 < new_ev < params.ev.charger_min_w:
        cut_ev, new_ev = ev_w, 0.0
    excess_w -= cut_ev
    new_batt = decision.battery_charge_power_w
    if excess_w > 0 and batt_w > 0:
        new_batt = max(0.0, batt_w - excess_w)
    return replace(decision, ev_power_limit_w=new_ev, battery_charge_power_w=new_batt, reasons=tuple(reasons))


class RulesStrategy:
    """Binds the rule table to a tariff and a home; ``decide(state)`` is all a caller needs."""

    name = "rules"

    def __init__(self, tariff: Tariff, params: HomeParams) -> None:
        self.tariff = tariff
        self.params = params
        prices = [p.import_price_per_kwh for p in tariff.periods]
        self._min, self._max = min(prices), max(prices)

    def decide(
        self, state: HomeState, point: TariffPoint | None = None, weekend: bool | None = None
    ) -> Decision:
        point = point or self.tariff.at(state.ts)
        if weekend is None:
            weekend = is_weekend(state.ts, self.tariff.timezone)
        klass = price_class(point, self._min, self._max)
        return rules_decision(state, point, klass=klass, weekend=weekend, params=self.params)


class NoControlStrategy:
    name = "none"

    def decide(
        self, state: HomeState, point: TariffPoint | None = None, weekend: bool | None = None
    ) -> Decision:
        return no_control()
