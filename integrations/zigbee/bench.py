"""``hems bench zigbee-ota`` (or ``python -m integrations.zigbee.bench``): a Zigbee OTA update of the simulated
thermostat through zigpy's OTA manager on the simulated radio, per image size: wall time from the file landing in
the OTA folder to the device running the new version, blocks, and bytes per second.

The simulated air has no radio delay, so these figures are the gateway's own cost (zigpy's ZCL encoding, the
OTA manager, the integration); a real 250 kbit/s network with ~50-byte blocks is far slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path


async def _until(predicate, what: str, timeout_s: float = 300.0, poll_s: float = 0.005) -> None:
    for _ in range(int(timeout_s / poll_s)):
        if predicate():
            return
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")


async def _one(size_bytes: int, run: int) -> dict:
    from hems.bus import Bus
    from hems.clock import ManualClock
    from hems.config import Config, GatewayConfig
    from hems.integration import IntegrationContext
    from hems.livesim import LiveSimHome

    from .client import ZigbeeIntegration, default_device_id
    from .ota import make_ota_image
    from .simnodes import (
        FIRST_FILE_VERSION,
        MANUFACTURER_CODE,
        THERMOSTAT_IEEE,
        THERMOSTAT_IMAGE_TYPE,
        SimHomeZigbee,
    )
    from .simradio import SimNetwork

    clock = ManualClock(1_782_900_000.0)
    config = Config()
    sim = LiveSimHome(config.home, clock)
    network = SimNetwork(f"bench-ota-{os.getpid()}-{run}", tick_s=0.05)
    home = SimHomeZigbee(network, sim)
    bus = Bus(clock)
    with tempfile.TemporaryDirectory(prefix="hems-zigbee-bench-") as data_dir:
        ota_dir = Path(data_dir) / "ota"
        section = {"radio": "simulated", "sim_network": network.name, "ota_dir": str(ota_dir)}
        section["ota_check_interval_s"] = 0.05
        cfg = replace(config, gateway=GatewayConfig(data_dir=data_dir))
        zigbee = ZigbeeIntegration(IntegrationContext("zigbee", bus, clock, cfg, section))
        device_id = default_device_id(THERMOSTAT_IEEE)
        try:
            await zigbee.start()
            await zigbee.permit_join(60)
            await _until(lambda: bus.firmware(device_id) is not None, "the thermostat to pair")
            target = FIRST_FILE_VERSION + 1
            image = make_ota_image(
                manufacturer_id=MANUFACTURER_CODE,
                image_type=THERMOSTAT_IMAGE_TYPE,
                file_version=target,
                payload=os.urandom(max(size_bytes - 62, 1)),
            )
            t0 = time.perf_counter()
            (ota_dir / "bench.ota").write_bytes(image)
            await _until(lambda: home.thermostat.ota.version == target, "the thermostat to restart")
            transferred_s = time.perf_counter() - t0
            await _until(lambda: bus.firmware(device_id).update_state == "installed", "the installed status")
            installed_s = time.perf_counter() - t0
        finally:
            await zigbee.stop()
            home.stop()
            network.close()
    return {
        "image_bytes": len(image),
        "blocks": home.thermostat.ota.block_requests,
        "device_restarted_s": round(transferred_s, 3),
        "gateway_shows_installed_s": round(installed_s, 3),
        "bytes_per_s": round(len(image) / transferred_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hems bench zigbee-ota", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2048,16384,65536", help="image sizes in bytes, comma-separated")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]

    async def run_all() -> list[dict]:
        return [await _one(size, i) for i, size in enumerate(sizes)]

    results = asyncio.run(run_all())
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(
                f"{r['image_bytes']:>7} B  {r['blocks']:>5} blocks  device restarted after {r['device_restarted_s']:.2f} s"
                f"  ({r['bytes_per_s']:,} B/s)  gateway shows installed after {r['gateway_shows_installed_s']:.2f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
