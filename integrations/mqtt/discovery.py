"""Home Assistant MQTT discovery: config payloads for every device's readings and for the controls.

Pure functions. Topics: ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (retained), with
``node_id`` the gateway id and ``object_id`` ``<device_id>_<quantity>``. Every entity carries a
``unique_id``, a ``device`` block (one HA device per gateway device, each ``via_device`` the gateway) and the
gateway's will topic as availability, so HA shows everything unavailable when the gateway is gone.
"""

from __future__ import annotations

import re

from hems.home import HomeParams
from hems.model import HVAC_MODES, DeviceInfo, Quantity

Q = Quantity
NUMBER = "{{ value_json.value if value_json.value is number else None }}"
BOOL = "{{ 'ON' if value_json.value else 'OFF' }}"
TEXT = "{{ value_json.value }}"

# quantity -> (component, device_class, state_class, unit, value_template)
_SPECS: dict[str, tuple[str, str | None, str | None, str | None, str]] = {
    Q.GRID_POWER_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.ENERGY_IMPORT_WH: ("sensor", "energy", "total_increasing", "Wh", NUMBER),
    Q.ENERGY_EXPORT_WH: ("sensor", "energy", "total_increasing", "Wh", NUMBER),
    Q.ENERGY_WH: ("sensor", "energy", "total_increasing", "Wh", NUMBER),
    Q.SESSION_ENERGY_WH: ("sensor", "energy", "total_increasing", "Wh", NUMBER),
    Q.VOLTAGE_V: ("sensor", "voltage", "measurement", "V", NUMBER),
    Q.CURRENT_A: ("sensor", "current", "measurement", "A", NUMBER),
    Q.PV_POWER_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.PV_AVAILABLE_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.PV_LIMIT_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.BATTERY_POWER_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.BATTERY_SETPOINT_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.POWER_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.EV_POWER_LIMIT_W: ("sensor", "power", "measurement", "W", NUMBER),
    Q.SOC_PCT: ("sensor", "battery", "measurement", "%", NUMBER),
    Q.EV_SOC_PCT: ("sensor", "battery", "measurement", "%", NUMBER),
    Q.INDOOR_TEMP_C: ("sensor", "temperature", "measurement", "°C", NUMBER),
    Q.OUTDOOR_TEMP_C: ("sensor", "temperature", "measurement", "°C", NUMBER),
    Q.HEAT_SETPOINT_C: ("sensor", "temperature", "measurement", "°C", NUMBER),
    Q.COOL_SETPOINT_C: ("sensor", "temperature", "measurement", "°C", NUMBER),
    Q.TANK_TEMP_C: ("sensor", "temperature", "measurement", "°C", NUMBER),
    Q.HVAC_MODE: ("sensor", None, None, None, TEXT),
    Q.STATUS: ("sensor", None, None, None, TEXT),
    Q.EV_PLUGGED: ("binary_sensor", "plug", None, None, BOOL),
    Q.SWITCH_ON: ("binary_sensor", "power", None, None, BOOL),
    Q.GROUND_FAULT: ("binary_sensor", "problem", None, None, BOOL),
}


def slug(text: str) -> str:
    """HA node/object ids: ``[a-zA-Z0-9_-]`` only."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def gateway_device(gateway_id: str) -> dict:
    return {
        "identifiers": [f"hems_{slug(gateway_id)}"],
        "name": f"HEMS gateway {gateway_id}",
        "manufacturer": "HEMS",
        "model": "hems-gateway",
    }


def device_block(gateway_id: str, info: DeviceInfo | None, device_id: str) -> dict:
    return {
        "identifiers": [f"hems_{slug(gateway_id)}_{slug(device_id)}"],
        "name": info.name if info is not None and info.name else device_id,
        "manufacturer": (info.manufacturer if info is not None else "") or "HEMS",
        "model": (info.model if info is not None else "") or "unknown",
        "via_device": f"hems_{slug(gateway_id)}",
    }


def _common(gateway_id: str, base: str, object_id: str, name: str, device: dict) -> dict:
    return {
        "name": name,
        "unique_id": f"hems_{slug(gateway_id)}_{object_id}",
        "object_id": f"hems_{slug(gateway_id)}_{object_id}",
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "hems-gateway"},
    }


def sensor_config(
    gateway_id: str,
    base: str,
    prefix: str,
    info: DeviceInfo | None,
    device_id: str,
    quantity: str,
    state_topic: str,
) -> tuple[str, dict]:
    """The discovery topic and payload for one reading of one device."""
    component, device_class, state_class, unit, template = _SPECS.get(
        quantity, ("sensor", None, None, None, TEXT)
    )
    object_id = slug(f"{device_id}_{quantity}")
    cfg = _common(
        gateway_id,
        base,
        object_id,
        quantity.replace("_", " "),
        device_block(gateway_id, info, device_id),
    )
    cfg["state_topic"] = state_topic
    cfg["value_template"] = template
    if device_class:
        cfg["device_class"] = device_class
    if state_class:
        cfg["state_class"] = state_class
    if unit:
        cfg["unit_of_measurement"] = unit
    if component == "binary_sensor":
        cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
    return f"{prefix}/{component}/{slug(gateway_id)}/{object_id}/config", cfg


def control_topic(base: str, device_id: str, control: str) -> str:
    return f"{base}/ha/{device_id}/{control}/set"


def battery_number(
    gateway_id: str, base: str, prefix: str, info: DeviceInfo, state_topic: str, params: HomeParams
) -> tuple[str, dict]:
    d = info.device_id
    object_id = slug(f"{d}_battery_setpoint")
    cfg = _common(gateway_id, base, object_id, "battery setpoint", device_block(gateway_id, info, d))
    cfg.update(
        command_topic=control_topic(base, d, "battery_setpoint_w"),
        state_topic=state_topic,
        value_template=NUMBER,
        min=-params.battery.max_discharge_w,
        max=params.battery.max_charge_w,
        step=100,
        unit_of_measurement="W",
        device_class="power",
        mode="box",
    )
    return f"{prefix}/number/{slug(gateway_id)}/{object_id}/config", cfg


def hvac_select(
    gateway_id: str, base: str, prefix: str, info: DeviceInfo, state_topic: str
) -> tuple[str, dict]:
    d = info.device_id
    object_id = slug(f"{d}_hvac_mode_select")
    cfg = _common(gateway_id, base, object_id, "HVAC mode", device_block(gateway_id, info, d))
    cfg.update(
        command_topic=control_topic(base, d, "hvac_mode"),
        state_topic=state_topic,
        value_template=TEXT,
        options=list(HVAC_MODES),
    )
    return f"{prefix}/select/{slug(gateway_id)}/{object_id}/config", cfg


def relay_switch(
    gateway_id: str, base: str, prefix: str, info: DeviceInfo, state_topic: str
) -> tuple[str, dict]:
    d = info.device_id
    object_id = slug(f"{d}_relay")
    cfg = _common(gateway_id, base, object_id, "relay", device_block(gateway_id, info, d))
    cfg.update(
        command_topic=control_topic(base, d, "switch_on"),
        state_topic=state_topic,
        value_template=BOOL,
        payload_on="ON",
        payload_off="OFF",
        state_on="ON",
        state_off="OFF",
    )
    return f"{prefix}/switch/{slug(gateway_id)}/{object_id}/config", cfg


def gateway_entities(gateway_id: str, base: str, prefix: str) -> list[tuple[str, dict]]:
    """The gateway itself: its connectivity (the will topic) and a 'return to plan' button."""
    dev = gateway_device(gateway_id)
    node = slug(gateway_id)
    online = _common(gateway_id, base, "gateway_online", "online", dev)
    online.pop("availability_topic")
    online.pop("payload_available")
    online.pop("payload_not_available")
    online.update(
        state_topic=f"{base}/status", payload_on="online", payload_off="offline", device_class="connectivity"
    )
    button = _common(gateway_id, base, "gateway_return_to_plan", "return to plan", dev)
    button.update(command_topic=control_topic(base, "gateway", "return_to_plan"), payload_press="PRESS")
    return [
        (f"{prefix}/binary_sensor/{node}/gateway_online/config", online),
        (f"{prefix}/button/{node}/gateway_return_to_plan/config", button),
    ]
