"""The controller's limits, in priority order: safety, service limit, DR, battery reserve, then the plan.

Whatever the strategy decided (planner, rules, a VPP dispatch), these run last and can only tighten it:
a lower limit never loosens what a higher one allows. They need nothing but the measured state, so they
hold when the planner is late, has failed, or was never started.

1. Safety interlock: a ground fault reported by any device turns PV and EV charging off.
2. Service limit: planned import stays within the main panel's rating (EV first, then battery charging).
3. DR: a SIMPLE level's default response (EV paused, water heater off, HVAC set back, battery covering the
   home), then an active import cap (or baseline − shed) held by pausing the EV, deferring the water heater,
   stopping battery charging and, if still above, discharging the battery.
4. Battery reserve: outside DR events the battery is not discharged below the homeowner's reserve.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .dr import LevelResponse
from .home import HomeParams
from .rules import Decision, HomeState, limit_to_service


@dataclass(frozen=True, slots=True)
class LimitInputs:
    ground_fault: bool = False
    dr_import_cap_w: float | None = None  # the tightest active DR import limit, W
    dr_event: str = ""  # id of the event setting it, for the reasons
    dr_level: LevelResponse | None = None  # the default response of a SIMPLE level event in force
    export_cap_w: float | None = None  # a utility's export limit in force (IEEE 2030.5 opModExpLimW)
    generation_cap_w: float | None = None  # a utility's PV generation limit in force (0 = cease to energize)


def projected_import_w(d: Decision, s: HomeState, params: HomeParams) -> float:
    """Grid power if the decision is applied to what is measured now (+ import)."""
    ev_w = 0.0
    if s.ev_plugged:
        ev_w = params.ev.charger_max_w if d.ev_power_limit_w is None else d.ev_power_limit_w
    wh_w = s.water_heater_power_w if d.water_heater_enabled else 0.0
    battery = d.battery_charge_power_w if d.battery_charge_power_w is not None else 0.0
    pv = s.pv_power_w if d.pv_limit_w is None else min(s.pv_power_w, d.pv_limit_w)
    return s.home_load_w - s.water_heater_power_w + wh_w + ev_w + battery - pv


def apply_limits(d: Decision, s: HomeState, params: HomeParams, limits: LimitInputs) -> Decision:
    reasons = list(d.reasons)
    b = params.battery

    # 1. safety
    if limits.ground_fault:
        d = replace(d, pv_limit_w=0.0, ev_power_limit_w=0.0)
        reasons.insert(0, "ground fault: PV and EV charging off")

    # 2. service limit
    before = d
    d = limit_to_service(d, s, params)
    if d is not before:
        reasons = list(d.reasons)

    # 3. DR: the level's default response, then the import cap
    level = limits.dr_level
    if level is not None and level.level > 0:
        if level.ev_paused and s.ev_plugged:
            d = replace(d, ev_power_limit_w=0.0)
        if level.water_heater_off or level.all_sheddable_off:
            d = replace(d, water_heater_enabled=False)
        if level.hvac_setback_c > 0:
            hvac = params.hvac
            cool = (
                d.cool_setpoint_c if d.cool_setpoint_c is not None else hvac.cool_setpoint_c
            ) + level.hvac_setback_c
            heat = (
                d.heat_setpoint_c if d.heat_setpoint_c is not None else hvac.heat_setpoint_c
            ) - level.hvac_setback_c
            d = replace(d, cool_setpoint_c=round(cool, 2), heat_setpoint_c=round(heat, 2))
        if level.battery_discharge and s.battery_soc_pct > b.min_soc_pct:
            cover = -max(0.0, projected_import_w(replace(d, battery_charge_power_w=0.0), s, params))
            current = d.battery_charge_power_w if d.battery_charge_power_w is not None else 0.0
            d = replace(d, battery_charge_power_w=max(-b.max_discharge_w, min(current, cover)))
        reasons.append(f"DR level {level.level} ({level.name}): {level.description.split(': ', 1)[-1]}")
    cap = limits.dr_import_cap_w
    if cap is not None and projected_import_w(d, s, params) > cap:
        label = f"DR event {limits.dr_event}: import held under {cap / 1000:.1f} kW".replace(
            "event :", "event:"
        )
        if s.ev_plugged and (d.ev_power_limit_w is None or d.ev_power_limit_w > 0):
            d = replace(d, ev_power_limit_w=0.0)
        if projected_import_w(d, s, params) > cap and d.water_heater_enabled:
            d = replace(d, water_heater_enabled=False)
        excess = projected_import_w(d, s, params) - cap
        if excess > 0:
            battery = d.battery_charge_power_w if d.battery_charge_power_w is not None else 0.0
            battery = max(-b.max_discharge_w, battery - excess)
            d = replace(d, battery_charge_power_w=battery)
        reasons.append(label)
    if cap is not None and d.water_heater_enabled and s.water_heater_power_w <= 0.0:
        # an idle heater switching itself on would break the cap until the next cycle: keep it off unless
        # the cap leaves room for it (the battery may still cover it) or the tank is below its minimum
        wh = params.water_heater
        room_w = cap - projected_import_w(d, s, params)
        battery = d.battery_charge_power_w if d.battery_charge_power_w is not None else 0.0
        room_w += max(0.0, battery + b.max_discharge_w) if s.battery_soc_pct > b.min_soc_pct else 0.0
        tank_ok = s.tank_temp_c is None or s.tank_temp_c >= wh.min_temp_c
        if room_w < wh.power_w and tank_ok:
            d = replace(d, water_heater_enabled=False)
            reasons.append("water heater held off during the DR event")

    # 3b. the utility's export and generation limits: PV ceiling first, then absorb or curtail the excess
    if limits.generation_cap_w is not None:
        ceiling = (
            limits.generation_cap_w if d.pv_limit_w is None else min(d.pv_limit_w, limits.generation_cap_w)
        )
        d = replace(d, pv_limit_w=max(0.0, ceiling))
        reasons.append(f"utility generation limit {limits.generation_cap_w / 1000:.1f} kW")
    if limits.export_cap_w is not None:
        excess = -projected_import_w(d, s, params) - limits.export_cap_w
        if excess > 0:
            battery = d.battery_charge_power_w if d.battery_charge_power_w is not None else 0.0
            room = max(0.0, b.max_charge_w - battery) if s.battery_soc_pct < b.max_soc_pct - 0.5 else 0.0
            take = min(room, excess)
            if take > 0:
                d = replace(d, battery_charge_power_w=battery + take)
                excess -= take
            if excess > 0:
                pv_now = s.pv_power_w if d.pv_limit_w is None else min(s.pv_power_w, d.pv_limit_w)
                d = replace(d, pv_limit_w=max(0.0, pv_now - excess))
            reasons.append(f"export limit {limits.export_cap_w / 1000:.1f} kW")

    # 4. battery reserve (a DR event may go below it: that is what the reserve is for)
    in_dr = cap is not None or (level is not None and level.level > 0)
    if not in_dr and s.battery_soc_pct <= b.reserve_soc_pct:
        battery = d.battery_charge_power_w
        if battery is None or battery < 0:
            d = replace(
                d,
                battery_charge_power_w=0.0 if battery is not None else max(0.0, s.pv_power_w - s.home_load_w),
            )
            reasons.append(f"battery at its {b.reserve_soc_pct:.0f} % reserve: not discharging")

    return replace(d, reasons=tuple(reasons))
