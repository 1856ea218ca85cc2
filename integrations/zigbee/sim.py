"""The simulated Zigbee network of the reference home: dev-mode peer and ``hems sim zigbee``.

``dev_peer`` starts a ``SimNetwork`` with the meter (ESI), thermostat, water heater relay and pool pump relay,
driven by the dev-mode ``LiveSimHome``, and points the zigbee integration at it (``radio = "simulated"``);
the devices join when the integration opens the network for joining, as real ones do when paired. A fifth
device, a garage smart plug (60 W), waits in pairing mode: it joins the next time the installer opens the
network (the dashboard's "Pair Zigbee devices"), to show pairing in dev mode.

``main`` runs the same network standalone with the real integration on a private bus and prints what goes
over the air and what the gateway makes of it, including a load control event, a price and a message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

import zigpy.zdo.types as zdo_t
from zigpy.zcl import Cluster, foundation

from hems.integration import DevPeerContext

from . import smartenergy as se
from .simnodes import SimHomeZigbee
from .simradio import AirFrame, SimNetwork

log = logging.getLogger(__name__)

REPLACES = frozenset({"grid-meter", "thermostat", "water-heater"})
SPARE_PLUG_W = 60.0
_names = itertools.count(1)


@dataclass
class ZigbeeDevPeer:
    network: SimNetwork
    home: SimHomeZigbee
    section: dict[str, Any]
    replaces: set[str] = field(default_factory=lambda: set(REPLACES))
    devices: list[dict[str, Any]] = field(default_factory=list)

    async def stop(self) -> None:
        self.home.stop()
        self.network.close()


async def dev_peer(ctx: DevPeerContext) -> ZigbeeDevPeer:
    name = f"dev-{os.getpid()}-{next(_names)}"
    network = SimNetwork(name)
    home = SimHomeZigbee(network, ctx.sim, spare_plug_w=SPARE_PLUG_W)
    section = {
        "radio": "simulated",
        "sim_network": name,
        "permit_join_s": 120,  # the simulated devices join (and are interviewed) as soon as the gateway starts
        "poll_interval_s": 30.0,
        "report_min_s": 1,
        "report_max_s": 60,
    }
    ctx.log.info(
        "simulated Zigbee network %r: meter %s, thermostat %s, water heater %s, pool pump %s",
        name,
        home.meter.node.ieee,
        home.thermostat.node.ieee,
        home.water_heater.node.ieee,
        home.pool_pump.node.ieee,
    )
    # name the simulated nodes as the built-in sim devices were, so dev mode keeps its familiar ids
    devices = [
        {
            "type": "zigbee",
            "ieee": str(home.meter.node.ieee),
            "id": "grid-meter",
            "name": "Smart meter",
            "role": "grid_meter",
        },
        {
            "type": "zigbee",
            "ieee": str(home.thermostat.node.ieee),
            "id": "thermostat",
            "name": "Thermostat",
            "role": "thermostat",
        },
        {
            "type": "zigbee",
            "ieee": str(home.water_heater.node.ieee),
            "id": "water-heater",
            "name": "Water heater",
            "role": "water_heater",
        },
        {
            "type": "zigbee",
            "ieee": str(home.pool_pump.node.ieee),
            "id": "pool-pump",
            "name": "Pool pump",
            "role": "pool_pump",
        },
        {  # not paired yet: joins when the installer opens the network
            "type": "zigbee",
            "ieee": str(home.spare_plug.node.ieee),
            "id": "garage-plug",
            "name": "Garage smart plug",
            "role": "load",
        },
    ]
    return ZigbeeDevPeer(network=network, home=home, section=section, devices=devices)


# -- a sniffer for the simulated air ----------------------------------------------------------------------------


def describe(frame: AirFrame) -> str:
    """One line for a frame on the simulated air, decoded with zigpy."""
    data = bytes(frame.payload)
    src = "gateway" if frame.src == 0 else f"0x{frame.src:04X}"
    dst = f"0x{frame.dst:04X}" if frame.dst_mode == 2 else "all"
    if frame.dst == 0 and frame.dst_mode == 2:
        dst = "gateway"
    if frame.profile == 0 and frame.dst_ep == 0:
        try:
            name = zdo_t.ZDOCmd(frame.cluster).name
        except ValueError:
            name = f"ZDO 0x{frame.cluster:04X}"
        return f"{src:>8} -> {dst:<8} ZDO {name}"
    cls = Cluster._registry.get(frame.cluster)
    cluster_name = cls.__name__ if cls is not None else f"0x{frame.cluster:04X}"
    try:
        hdr, rest = foundation.ZCLHeader.deserialize(data)
    except ValueError:
        return f"{src:>8} -> {dst:<8} {cluster_name} (malformed)"
    if hdr.frame_control.is_cluster and cls is not None:
        commands = (
            cls.server_commands
            if hdr.direction == foundation.Direction.Client_to_Server
            else cls.client_commands
        )
        definition = commands.get(hdr.command_id)
        name = definition.name if definition is not None else f"command 0x{hdr.command_id:02X}"
        detail = ""
        if definition is not None:
            with contextlib.suppress(Exception):
                args, _ = definition.schema.deserialize(rest)
                detail = " " + ", ".join(f"{k}={v!r}" for k, v in args.as_dict().items() if k != "signature")
        return f"{src:>8} -> {dst:<8} {cluster_name} {name}{detail[:160]}"
    try:
        command = foundation.GeneralCommand(hdr.command_id)
    except ValueError:
        return f"{src:>8} -> {dst:<8} {cluster_name} general 0x{hdr.command_id:02X}"
    detail = ""
    if command == foundation.GeneralCommand.Report_Attributes and cls is not None:
        with contextlib.suppress(Exception):
            args, _ = foundation.GENERAL_COMMANDS[command].schema.deserialize(rest)
            detail = " " + ", ".join(
                f"{cls.find_attribute(a.attrid).name}={a.value.value}" for a in args.attribute_reports
            )
    return f"{src:>8} -> {dst:<8} {cluster_name} {command.name}{detail}"


# -- hems sim zigbee ----------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hems sim zigbee",
        description="Run the simulated Zigbee network of the reference home with the gateway's zigbee integration, "
        "and print what happens on the air and on the gateway's bus.",
    )
    parser.add_argument(
        "--seconds", type=float, default=12.0, help="how long to run (wall seconds, default 12)"
    )
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="do not print every frame, only the gateway's view"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.speed <= 0:
        parser.error("--seconds and --speed must be > 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_standalone(args.seconds, args.speed, args.quiet))
    except KeyboardInterrupt:
        return 130
    return 0


async def _standalone(seconds: float, speed: float, quiet: bool) -> None:
    from hems.bus import Bus
    from hems.clock import SimClock
    from hems.config import Config, GatewayConfig
    from hems.integration import IntegrationContext
    from hems.livesim import LiveSimHome

    from .client import ZigbeeIntegration

    clock = SimClock(speed=speed)
    config = Config()
    sim = LiveSimHome(config.home, clock, tick_s=0.5)
    network = SimNetwork(f"standalone-{os.getpid()}")
    home = SimHomeZigbee(network, sim)
    t0 = asyncio.get_running_loop().time()

    def stamp() -> str:
        return f"[{asyncio.get_running_loop().time() - t0:5.1f} s]"

    if not quiet:
        network.taps.append(lambda way, frame: print(stamp(), "air", describe(frame)))
    bus = Bus(clock)
    with tempfile.TemporaryDirectory(prefix="hems-zigbee-") as data_dir:
        cfg = replace(config, gateway=GatewayConfig(data_dir=data_dir))
        section = {"radio": "simulated", "sim_network": network.name, "report_min_s": 2, "report_max_s": 30}
        ctx = IntegrationContext(name="zigbee", bus=bus, clock=clock, config=cfg, section=section, sim=sim)
        zigbee = ZigbeeIntegration(ctx)
        printed: dict[tuple[str, str], Any] = {}
        sub = bus.subscribe()
        try:
            await zigbee.start()
            sim.start()
            print(stamp(), "gateway: radio up; permitting joins for 60 s")
            await zigbee.permit_join(60)
            script = [
                (
                    3.0,
                    "issue a load control event (water heater + HVAC, level 3, 30 min, +2 °C cooling offset)",
                ),
                (5.0, "publish a price (0.42 USD/kWh, tier 3 of 3, acknowledgement required)"),
                (6.0, "display a message that needs confirmation"),
                (8.0, "the gateway reports the event started"),
                (9.0, "cancel the event"),
            ]
            event_id = 0
            while (elapsed := asyncio.get_running_loop().time() - t0) < seconds:
                while script and elapsed >= script[0][0]:
                    _, what = script.pop(0)
                    print(stamp(), "script:", what)
                    if what.startswith("issue"):
                        event_id = home.meter.issue_load_control_event(
                            device_class=int(
                                se.DeviceClass.Water_Heater | se.DeviceClass.HVAC_Compressor_or_Furnace
                            ),
                            criticality=se.CriticalityLevel.Level_3,
                            duration_min=30,
                            cooling_offset_c=2.0,
                        )
                    elif what.startswith("publish"):
                        home.meter.publish_price(0.42, now=clock.now(), tier=3, ack_required=True)
                    elif what.startswith("display"):
                        home.meter.display_message("Peak pricing 4-9 pm today", message_id=7, confirm=True)
                    elif what.startswith("the gateway"):
                        with contextlib.suppress(Exception):
                            await zigbee.report_event_status(event_id, "started")
                    elif what.startswith("cancel"):
                        home.meter.drlc.cancel(event_id)
                for reading in sub.drain():
                    key = (reading.device_id, reading.quantity)
                    if printed.get(key) != reading.value:
                        printed[key] = reading.value
                        print(
                            stamp(), f"bus  {reading.device_id:<26} {reading.quantity:<18} {reading.value!r}"
                        )
                await asyncio.sleep(0.1)
            print(stamp(), "the meter received these event status reports:")
            for report in home.meter.drlc.reports:
                print("      ", f"event {report.issuer_event_id}: {report.event_status.name}")
            for ack in home.meter.price.acks:
                print("      ", f"price {ack.issuer_event_id} acknowledged")
            if 7 in zigbee.messages:
                await zigbee.confirm_message(7)
                await asyncio.sleep(0.2)
            for confirmation in home.meter.messaging.confirmations:
                print("      ", f"message {confirmation.message_id} confirmed")
        finally:
            sub.close()
            await sim.stop()
            await zigbee.stop()
            home.stop()
            network.close()
