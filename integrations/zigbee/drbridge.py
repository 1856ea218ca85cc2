"""Zigbee DRLC events and prices from the meter become core DR events, and the lifecycle is answered back.

A LoadControlEvent is mapped onto one ``DREvent`` (source "zigbee"): its criticality onto an OpenADR-like
SIMPLE level (the core's default responses), an average load adjustment (e.g. -30 %) onto a shed against
the event's baseline, and set points and offsets are kept in the event's reference for the record. The
core's notices (started, completed, cancelled, opted out, superseded) go back to the meter as Report Event
Status through zigpy; "received" the integration already sends on arrival.

A PublishPrice for energy (per kWh) becomes a price event ("price-<id>") in the same lifecycle: the planner
then plans on the utility's price for that period instead of the configured tariff (``DRManager.prices``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from hems.dr import DREvent, DRNotice

from . import events as ev

if TYPE_CHECKING:
    from hems.dr import DRManager

log = logging.getLogger(__name__)

SOURCE = "zigbee"
# ZigBee SE criticality: 1 green, 2-6 levels 1-5 (voluntary), 7 emergency, 8 planned outage, 9 disconnect
CRITICALITY_LEVEL = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3}
NOTICE_STATUS = {
    DRNotice.STARTED: "started",
    DRNotice.COMPLETED: "completed",
    DRNotice.CANCELLED: "cancelled",
    DRNotice.OPTED_OUT: "opted_out",
    DRNotice.SUPERSEDED: "superseded",
}


def to_dr_event(item: ev.DRLCEvent, now: float) -> DREvent:
    start = now if item.start_ts == 0 else item.start_ts
    level = CRITICALITY_LEVEL.get(int(item.criticality), 2)
    randomize_s = 0.0
    if item.event_control & 0x01:  # randomise the start, within the SE default of up to 30 min
        randomize_s = 30 * 60.0
    return DREvent(
        source=SOURCE,
        event_id=str(item.issuer_event_id),
        start_ts=start,
        duration_s=60.0 * item.duration_min,
        level=level,
        randomization_s=randomize_s,
        received_ts=now,
        source_ref={
            "meter": item.source,
            "criticality": int(item.criticality),
            "device_classes": list(item.loads),
            "avg_load_adjustment_pct": item.avg_load_adjustment_pct,
            "duty_cycle_pct": item.duty_cycle_pct,
            "cooling_offset_c": item.cooling_offset_c,
            "heating_offset_c": item.heating_offset_c,
        },
    )


class ZigbeeDRBridge:
    """Registered with the DR manager as the responder for source "zigbee"."""

    def __init__(self, integration, dr: DRManager) -> None:
        self.integration = integration
        self.dr = dr
        dr.register_responder(SOURCE, self)
        integration.on_drlc_event = self.on_drlc
        integration.on_price = self.on_price

    async def on_price(self, price: ev.PriceEvent) -> None:
        if not price.per_kwh:
            log.info(
                "zigbee: price %s is not per kWh (unit %d): not used for planning",
                price.rate_label,
                price.unit_of_measure,
            )
            return
        now = self.integration.ctx.clock.now()
        duration_s = (
            86400.0 if price.duration_min is None else 60.0 * price.duration_min
        )  # "until changed": a day
        await self.dr.receive(
            DREvent(
                source=SOURCE,
                event_id=f"price-{price.issuer_event_id}",
                start_ts=now if price.start_ts == 0 else price.start_ts,
                duration_s=duration_s,
                price_per_kwh=float(price.price),
                received_ts=now,
                source_ref={"meter": price.source, "rate_label": price.rate_label, "tier": price.price_tier},
            )
        )

    async def on_drlc(self, item: ev.DRLCEvent | ev.DRLCCancel) -> None:
        now = self.integration.ctx.clock.now()
        if isinstance(item, ev.DRLCEvent):
            event = to_dr_event(item, now)
            await self.dr.receive(event)
            return
        if item.cancel_all:
            keys = [e.key for e in self.dr.events(include_terminal=False) if e.source == SOURCE]
        else:
            keys = [f"{SOURCE}:{item.issuer_event_id}"]
        for key in keys:
            if self.dr.get(key) is not None:
                await self.dr.cancel(key, reason="cancelled by the utility through the meter")

    # -- DRResponder ---------------------------------------------------------------------------------------
    async def send_status(self, event: DREvent, status: DRNotice) -> None:
        word = NOTICE_STATUS.get(status)
        if word is None:
            return
        try:
            issuer_id = int(event.event_id)
        except ValueError:
            return
        applied = None
        adj = event.source_ref.get("avg_load_adjustment_pct")
        if status is DRNotice.STARTED and isinstance(adj, int):
            applied = adj
        try:
            await self.integration.report_event_status(
                issuer_id, word, avg_load_adjustment_applied_pct=applied
            )
        except LookupError:  # the meter forgot it (restart): nothing to answer
            log.info("zigbee: no DRLC event %s to report %s to", issuer_id, word)

    async def send_report(self, event: DREvent, report: dict) -> None:
        # Smart Energy has no verification report message; the report stays in the gateway's records.
        shed = report.get("shed_wh") if isinstance(report, dict) else None
        if isinstance(shed, int | float) and math.isfinite(shed):
            log.info("zigbee: DRLC event %s shed %.0f Wh (kept locally)", event.event_id, shed)
