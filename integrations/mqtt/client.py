"""The MQTT integration: paho-mqtt links, telemetry with store-and-forward, commands, HA discovery.

Threads: each link's paho network loop is the one thread (``loop_start``); every paho callback hands its
arguments to the asyncio loop with ``call_soon_threadsafe`` and does nothing else. ``publish`` is called from
the asyncio loop (paho's publish is thread-safe).

Store-and-forward (the first link with ``telemetry = true``, the *primary* link): every telemetry message is
written to the store's outbox first, then a drain task publishes the outbox in id order with up to ``WINDOW``
messages in flight, and removes each one when the broker's PUBACK arrives. While the broker is unreachable the
outbox fills (bounded by the store; the oldest are dropped and counted); after a reconnect paho re-sends what
was in flight and the drain continues behind it, so order holds and a message is repeated at most when its
PUBACK was lost (QoS 1's allowance). A new integration instance on the same store delivers what is left.
Other telemetry links publish directly while connected and skip while not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hems.dr import DRState, OptState
from hems.integration import IntegrationContext
from hems.model import HVAC_MODES, Capability, Command, CommandError, Reading, Setting

from . import discovery as ha
from .config import LinkConfig, parse
from .dispatch import (
    Dispatch,
    HomeView,
    Override,
    ParsedCommand,
    Rejected,
    Sheddable,
    parse_command,
    plan_command,
)

WINDOW = 100  # outbox messages in flight at once
BATCH = 200
RESPONSE_DEADLINE_S = 1.5  # the device command must be through within this, so the answer is within 2 s
HA_OVERRIDE_S = 3600.0  # a Home Assistant control holds for an hour (or until "return to plan")
SESSION_EXPIRY_S = 7 * 86400
RESERVED_DEVICE_IDS = ("status", "plan", "dr", "cmd", "ha", "link")
DROPPED_QUANTITY = "outbox_dropped"


def topic_level(text: str) -> str:
    """One MQTT topic level: no '/', '+', '#' or NUL."""
    out = "".join("_" if c in "/+#\x00" else c for c in str(text))
    return out or "_"


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def reading_payload(r: Reading) -> bytes:
    return json.dumps(
        {"value": _json_value(r.value), "unit": r.unit, "ts": r.ts}, separators=(",", ":")
    ).encode()


class RateLimiter:
    """At most one message per topic per ``interval_s``; a value held back is replaced by a newer one and sent
    when the interval is up (latest value wins)."""

    def __init__(
        self, interval_s: float, emit: Callable[[str, bytes], None], loop: asyncio.AbstractEventLoop
    ):
        self.interval_s = interval_s
        self.emit = emit
        self.loop = loop
        self.last: dict[str, float] = {}
        self.pending: dict[str, bytes] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def offer(self, topic: str, payload: bytes) -> None:
        if self.interval_s <= 0:
            self.emit(topic, payload)
            return
        now = self.loop.time()
        last = self.last.get(topic)
        if last is None or now - last >= self.interval_s:
            self.last[topic] = now
            self.emit(topic, payload)
            return
        self.pending[topic] = payload
        if topic not in self.timers:
            self.timers[topic] = self.loop.call_later(last + self.interval_s - now, self._flush, topic)

    def _flush(self, topic: str) -> None:
        self.timers.pop(topic, None)
        payload = self.pending.pop(topic, None)
        if payload is not None:
            self.last[topic] = self.loop.time()
            self.emit(topic, payload)

    def close(self) -> None:
        for t in self.timers.values():
            t.cancel()
        self.timers.clear()


class Link:
    """One broker connection (paho client + its network thread)."""

    def __init__(self, owner: MqttIntegration, cfg: LinkConfig) -> None:
        self.owner = owner
        self.cfg = cfg
        self.connected = False
        self.connects = 0
        self.offline_sent: asyncio.Event | None = None
        self.offline_mid = -1
        self.client_id = cfg.client_id or topic_level(f"hems-{owner.gateway_id}-{cfg.name}")[:64]
        v5 = cfg.protocol == "5"
        kwargs: dict = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": self.client_id}
        if v5:
            kwargs["protocol"] = mqtt.MQTTv5
        else:
            kwargs["protocol"] = mqtt.MQTTv311
            kwargs["clean_session"] = False
        c = mqtt.Client(**kwargs)
        paho_log = logging.getLogger(f"integrations.mqtt.paho.{cfg.name}")
        if (
            not paho_log.filters
        ):  # paho logs an error on every loop pass while reconnecting; we log the outage once
            paho_log.addFilter(lambda rec: not str(rec.msg).startswith("Client is not connected"))
        c.enable_logger(paho_log)
        c.will_set(owner.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        c.max_inflight_messages_set(WINDOW)
        c.max_queued_messages_set(0)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file, certfile=cfg.cert_file, keyfile=cfg.key_file)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        loop = owner.loop
        c.on_connect = lambda _c, _u, flags, rc, props: loop.call_soon_threadsafe(
            owner._on_connect, self, flags, rc
        )
        c.on_disconnect = lambda _c, _u, flags, rc, props: loop.call_soon_threadsafe(
            owner._on_disconnect, self, rc
        )
        c.on_publish = lambda _c, _u, mid, rc, props: loop.call_soon_threadsafe(
            owner._on_publish, self, mid, rc
        )
        c.on_message = lambda _c, _u, msg: loop.call_soon_threadsafe(
            owner._on_message, self, msg.topic, bytes(msg.payload)
        )
        self.client = c

    def start(self) -> None:
        cfg = self.cfg
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect_async(
                cfg.host, cfg.port, cfg.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(cfg.host, cfg.port, cfg.keepalive_s)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    async def stop(self) -> None:
        if self.connected:
            self.offline_sent = asyncio.Event()
            self.offline_mid = self.publish(self.owner.status_topic, "offline", qos=1, retain=True).mid
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.offline_sent.wait(), 1.0)
        self.client.disconnect()
        await asyncio.sleep(0)
        self.client.loop_stop()


class MqttIntegration:
    name = "mqtt"

    def __init__(self, ctx: IntegrationContext) -> None:
        self.ctx = ctx
        self.log = ctx.log
        self.links_cfg = parse(ctx.section)
        self.gateway_id = ctx.config.gateway.id
        self.base = f"hems/{topic_level(self.gateway_id)}"
        self.status_topic = f"{self.base}/status"
        self.cmd_topic = f"{self.base}/cmd"
        self.response_topic = f"{self.base}/cmd/response"
        self.dispatch = Dispatch()  # the controller consults dispatch.active_override(now); see dispatch.py
        self.links: list[Link] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # type: ignore[assignment]
        self._tasks: list[asyncio.Task] = []
        self._limiters: dict[str, RateLimiter] = {}
        self._primary: Link | None = None
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id (primary link)
        self._sent_upto = 0
        self._acks: list[int] = []
        self._wake: asyncio.Event | None = None
        self._announced: dict[str, set] = {}
        self._responses: dict[str, OrderedDict] = {}
        self._dropped_seen = -1
        self._dropped_reported = 0.0
        self._plan_sig: Any = None
        self._unsub_dr: Callable[[], None] | None = None
        self._sub = None
        self.stats = {"published": 0, "acked": 0, "commands": 0, "rejected": 0, "direct": 0}
        self.on_device_command: Callable[[Command], None] | None = None  # bench hook

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for cfg in self.links_cfg:
            link = Link(self, cfg)
            self.links.append(link)
            self._announced[cfg.name] = set()
            self._responses[cfg.name] = OrderedDict()
            if cfg.telemetry:
                if self._primary is None and self.ctx.store is not None:
                    self._primary = link
                self._limiters[cfg.name] = RateLimiter(
                    cfg.telemetry_interval_s, lambda t, p, link=link: self._emit(link, t, p), self.loop
                )
        self._sub = self.ctx.bus.subscribe(maxsize=10000)
        if self.ctx.dr is not None:
            self._unsub_dr = self.ctx.dr.on_change(self._on_dr_change)
        self._tasks = [
            asyncio.create_task(self._readings(), name="mqtt-readings"),
            asyncio.create_task(self._drain(), name="mqtt-drain"),
            asyncio.create_task(self._every_second(), name="mqtt-periodic"),
        ]
        self._report_dropped()
        for link in self.links:
            link.start()
        self.log.info(
            "MQTT: %d link(s): %s",
            len(self.links),
            ", ".join(f"{c.name} {c.host}:{c.port}" for c in self.links_cfg),
        )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for lim in self._limiters.values():
            lim.close()
        if self._unsub_dr:
            self._unsub_dr()
        if self._sub is not None:
            self._sub.close()
        self._flush_acks()
        for link in self.links:
            await link.stop()
        self._flush_acks()

    # ---- paho callbacks, on the asyncio loop ------------------------------------------------------------
    def _on_connect(self, link: Link, flags, rc) -> None:
        if rc.is_failure:
            self.log.warning("MQTT %s: connection refused: %s", link.cfg.name, rc)
            return
        link.connected = True
        link.connects += 1
        sock = link.client.socket()
        if sock is not None:  # commands and responses are small: don't let Nagle hold them back
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.log.info("MQTT %s: connected to %s:%d", link.cfg.name, link.cfg.host, link.cfg.port)
        link.publish(self.status_topic, "online", qos=1, retain=True)
        if link.cfg.commands:
            link.client.subscribe(self.cmd_topic, qos=1)
            if link.cfg.home_assistant:
                link.client.subscribe(f"{self.base}/ha/+/+/set", qos=1)
        if link.cfg.home_assistant:
            self._announced[link.cfg.name] = set()
            self._announce_all(link)
        self._publish_link_status(link)
        self._dropped_seen = -1  # the next tick re-publishes the dropped count as a reading
        if self._wake is not None:
            self._wake.set()

    def _on_disconnect(self, link: Link, rc) -> None:
        if link.connected:
            self.log.warning("MQTT %s: disconnected (%s); reconnecting with backoff", link.cfg.name, rc)
        link.connected = False

    def _on_publish(self, link: Link, mid: int, rc) -> None:
        if link.offline_sent is not None and mid == link.offline_mid:
            link.offline_sent.set()
        if link is self._primary:
            outbox_id = self._inflight.pop(mid, None)
            if outbox_id is not None:
                self._acks.append(outbox_id)
                if self._wake is not None:
                    self._wake.set()

    def _on_message(self, link: Link, topic: str, payload: bytes) -> None:
        if not link.cfg.commands:
            return
        if topic == self.cmd_topic:
            task = asyncio.ensure_future(self._handle_command(link, payload))
        elif topic.startswith(f"{self.base}/ha/") and topic.endswith("/set") and link.cfg.home_assistant:
            task = asyncio.ensure_future(self._handle_ha(link, topic, payload))
        else:
            return
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # ---- telemetry ------------------------------------------------------------------------------------
    def telemetry_topic(self, device_id: str, quantity: str) -> str:
        return f"{self.base}/{topic_level(device_id)}/{topic_level(quantity)}"

    async def _readings(self) -> None:
        assert self._sub is not None
        while True:
            r = await self._sub.get()
            try:
                topic = self.telemetry_topic(r.device_id, r.quantity)
                payload = reading_payload(r)
                for link in self.links:
                    if link.cfg.home_assistant and link.connected:
                        self._announce(link, r.device_id, r.quantity)
                    lim = self._limiters.get(link.cfg.name)
                    if lim is None:
                        continue
                    if r.device_id == "mqtt":  # our own outbox figures: never through the outbox (feedback)
                        if link.connected:
                            link.publish(topic, payload, qos=1)
                    else:
                        lim.offer(topic, payload)
            except Exception:
                self.log.exception("MQTT: reading %r not published", r)

    def _emit(self, link: Link, topic: str, payload: bytes | str) -> None:
        if link is self._primary and self.ctx.store is not None:
            store = self.ctx.store
            store.outbox_put(topic, payload, ts=self.ctx.clock.now(), qos=1)
            if store.outbox_stats()["dropped_total"] != self._dropped_seen:
                now = time.monotonic()
                if now - self._dropped_reported >= 1.0:
                    self._dropped_reported = now
                    self._report_dropped()
            assert self._wake is not None
            self._wake.set()
        elif link.connected:
            link.publish(topic, payload, qos=1, retain=self._retained(topic))
            self.stats["direct"] += 1

    def _emit_all(self, topic: str, payload: bytes | str) -> None:
        """Plan, DR and status messages: to every telemetry link, not rate-limited."""
        for link in self.links:
            if link.cfg.telemetry:
                self._emit(link, topic, payload)

    def _retained(self, topic: str) -> bool:
        return topic == f"{self.base}/plan" or topic.startswith(f"{self.base}/dr/")

    def _flush_acks(self) -> None:
        if self._acks and self.ctx.store is not None:
            acks, self._acks = self._acks, []
            self.ctx.store.outbox_ack(acks)
            self.stats["acked"] += len(acks)

    async def _drain(self) -> None:
        assert self._wake is not None
        store = self.ctx.store
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._flush_acks()
            link = self._primary
            if link is None or store is None:
                continue
            while link.connected and len(self._inflight) < WINDOW:
                rows = [
                    r for r in store.outbox_peek(len(self._inflight) + BATCH) if r["id"] > self._sent_upto
                ]
                if not rows:
                    break
                for row in rows:
                    if len(self._inflight) >= WINDOW or not link.connected:
                        break
                    info = link.publish(
                        row["topic"], row["payload"], qos=row["qos"], retain=self._retained(row["topic"])
                    )
                    if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                        break
                    self._inflight[info.mid] = row["id"]
                    self._sent_upto = row["id"]
                    self.stats["published"] += 1
                await asyncio.sleep(0)
                self._flush_acks()

    def _report_dropped(self) -> None:
        store = self.ctx.store
        if store is None:
            return
        dropped = store.outbox_stats()["dropped_total"]
        if dropped != self._dropped_seen:
            self._dropped_seen = dropped
            self.ctx.bus.publish(Reading("mqtt", DROPPED_QUANTITY, float(dropped), self.ctx.clock.now()))
            for link in self.links:
                self._publish_link_status(link)

    def _publish_link_status(self, link: Link) -> None:
        """``hems/<gw>/link/<name>``: connected, outbox size and dropped count (retained, published directly)."""
        if not link.connected:
            return
        stats = self.ctx.store.outbox_stats() if self.ctx.store is not None else {}
        payload = {
            "link": link.cfg.name,
            "connected": True,
            "primary": link is self._primary,
            "outbox_size": stats.get("size", 0),
            "outbox_dropped_total": stats.get("dropped_total", 0),
            "outbox_max_rows": stats.get("max_rows"),
            "ts": self.ctx.clock.now(),
        }
        link.publish(
            f"{self.base}/link/{topic_level(link.cfg.name)}", json.dumps(payload), qos=1, retain=True
        )

    # ---- plan, DR, periodic ----------------------------------------------------------------------------
    def _publish_plan(self) -> None:
        store = self.ctx.store
        if store is None:
            return
        plan = store.kv_get("plan.latest")
        if not isinstance(plan, dict):
            return
        sig = (plan.get("start_ts"), plan.get("reason"), plan.get("cost"), plan.get("solve_ms"))
        if sig == self._plan_sig:
            return
        self._plan_sig = sig
        n = 12
        summary = {
            "start_ts": plan.get("start_ts"),
            "step_s": plan.get("step_s"),
            "status": plan.get("status"),
            "reason": plan.get("reason"),
            "cost": plan.get("cost"),
            "grid_w": (plan.get("grid_w") or [])[:n],
            "battery_w": (plan.get("battery_w") or [])[:n],
            "battery_soc_pct": (plan.get("battery_soc_pct") or [])[:n],
            "ev_w": (plan.get("ev_w") or [])[:n],
            "reasons": (plan.get("reasons") or [[]])[0],
        }
        self._emit_all(f"{self.base}/plan", json.dumps(summary, separators=(",", ":")))

    def _on_dr_change(self, ev, notice) -> None:
        payload = {
            "key": ev.key,
            "event_id": ev.event_id,
            "source": ev.source,
            "state": str(ev.state),
            "opt": str(ev.opt),
            "notice": str(notice),
            "start_ts": ev.effective_start_ts,
            "end_ts": None if math.isinf(ev.end_ts) else ev.end_ts,
            "objective": ev.objective,
            "reason": ev.reason,
            "ts": self.ctx.clock.now(),
        }
        self._emit_all(f"{self.base}/dr/{topic_level(ev.key)}", json.dumps(payload, separators=(",", ":")))

    async def _every_second(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(1.0)
            n += 1
            try:
                now = self.ctx.clock.now()
                for ov in self.dispatch.expire(now):
                    self._respond(ov.link, ov.command_id, "completed", f"{ov.reason}: held until the end")
                for ov in self.dispatch.active(now):  # fallback until the controller consults the override
                    for device_id, setting, value in ov.commands:
                        await self._send(Command(device_id, setting, value, source=f"mqtt:{ov.link}"))
                self._report_dropped()
                self._publish_plan()
                if n % 30 == 0:
                    for link in self.links:
                        self._publish_link_status(link)
            except Exception:
                self.log.exception("MQTT periodic work failed")

    # ---- Home Assistant discovery ---------------------------------------------------------------------
    def _info(self, device_id: str):
        try:
            return self.ctx.bus.device(device_id).info
        except KeyError:
            return None

    def _announce(self, link: Link, device_id: str, quantity: str) -> None:
        done = self._announced[link.cfg.name]
        if (device_id, quantity) in done:
            return
        done.add((device_id, quantity))
        prefix = link.cfg.discovery_prefix
        info = self._info(device_id)
        state_topic = self.telemetry_topic(device_id, quantity)
        configs = [
            ha.sensor_config(self.gateway_id, self.base, prefix, info, device_id, quantity, state_topic)
        ]
        if info is not None and link.cfg.commands:
            caps = info.capabilities
            if quantity == "battery_setpoint_w" and Capability.BATTERY in caps:
                configs.append(
                    ha.battery_number(
                        self.gateway_id, self.base, prefix, info, state_topic, self.ctx.config.home
                    )
                )
            elif quantity == "hvac_mode" and Capability.THERMOSTAT in caps:
                configs.append(ha.hvac_select(self.gateway_id, self.base, prefix, info, state_topic))
            elif quantity == "switch_on" and Capability.SWITCH in caps:
                configs.append(ha.relay_switch(self.gateway_id, self.base, prefix, info, state_topic))
        for topic, cfg in configs:
            link.publish(topic, json.dumps(cfg, separators=(",", ":")), qos=1, retain=True)

    def _announce_all(self, link: Link) -> None:
        for topic, cfg in ha.gateway_entities(self.gateway_id, self.base, link.cfg.discovery_prefix):
            if not link.cfg.commands and "command_topic" in cfg:
                continue
            link.publish(topic, json.dumps(cfg, separators=(",", ":")), qos=1, retain=True)
        for device_id, readings in self.ctx.bus.snapshot().items():
            for quantity in readings:
                self._announce(link, device_id, quantity)

    # ---- commands -------------------------------------------------------------------------------------
    def _respond(self, link_name: str, cid, status: str, reason: str = "") -> None:
        payload = json.dumps({"id": cid, "status": status, "reason": reason, "ts": self.ctx.clock.now()})
        if status in ("accepted", "rejected") and cid is not None:
            cache = self._responses[link_name]
            cache[str(cid)] = payload
            while len(cache) > 256:
                cache.popitem(last=False)
        for link in self.links:
            if link.cfg.name == link_name and link.connected:
                link.publish(self.response_topic, payload, qos=1)

    async def _send(self, command: Command) -> None:
        await self.ctx.bus.send(command)
        if self.on_device_command is not None:
            self.on_device_command(command)

    def home_view(self) -> HomeView:
        bus = self.ctx.bus
        now = self.ctx.clock.now()
        battery = bus.first(Capability.BATTERY)
        meter = bus.first(Capability.GRID_METER)
        charger = bus.first(Capability.EV_CHARGER)

        def num(device, q, default=None):
            if device is None:
                return default
            v = bus.value(device.info.device_id, q)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default

        heaters = tuple(
            Sheddable(
                sw.info.device_id,
                num(sw, "power_w", 0.0) or 0.0,
                bus.value(sw.info.device_id, "switch_on", True) is not False,
            )
            for sw in bus.devices(Capability.SWITCH)
            if sw.info.extra.get("load") == "water_heater"
        )
        cap, dr_event, opted, in_force = None, "", (), False
        dr = self.ctx.dr
        if dr is not None:
            try:
                cap = dr.controller_limit_w(now)
                forcing = dr.in_force(now)
                in_force = bool(forcing)
                dr_event = ",".join(e.event_id for e in forcing)
                opted = tuple(
                    (e.key, e.event_id, e.end_ts)
                    for e in dr.events()
                    if (e.opt is OptState.OPT_OUT or e.state is DRState.OPTED_OUT)
                    and e.effective_start_ts <= now < e.end_ts
                )
            except Exception:
                self.log.exception("MQTT: DR state not readable for a command check")
        return HomeView(
            battery_id=battery.info.device_id if battery else None,
            soc_pct=num(battery, "soc_pct"),
            battery_w=num(battery, "battery_power_w", 0.0) or 0.0,
            grid_w=num(meter, "grid_power_w"),
            ev_id=charger.info.device_id if charger else None,
            ev_plugged=bool(bus.value(charger.info.device_id, "ev_plugged", False)) if charger else False,
            ev_power_w=num(charger, "power_w", 0.0) or 0.0,
            water_heaters=heaters,
            dr_import_cap_w=cap,
            dr_event=dr_event,
            opted_out=opted,
            dr_in_force=in_force,
        )

    async def _handle_command(self, link: Link, payload: bytes) -> None:
        self.stats["commands"] += 1
        cid = None
        try:
            cmd = parse_command(payload, link.cfg.command_token)
            cid = cmd.id
            cached = self._responses[link.cfg.name].get(str(cid))
            if cached is not None:  # a QoS 1 redelivery or a retry: answer again, act once
                link.publish(self.response_topic, cached, qos=1)
                return
            reason = await self.execute(cmd, link.cfg.name)
            self._respond(link.cfg.name, cid, "accepted", reason)
            if cmd.type == "return_to_plan":
                self._respond(link.cfg.name, cid, "completed", reason)
        except Rejected as exc:
            self.stats["rejected"] += 1
            self._respond(
                link.cfg.name, exc.command_id if exc.command_id is not None else cid, "rejected", exc.reason
            )
        except Exception as exc:  # never crash on a command
            self.stats["rejected"] += 1
            self.log.exception("MQTT command failed")
            self._respond(link.cfg.name, cid, "rejected", f"internal error: {type(exc).__name__}")

    async def execute(self, cmd: ParsedCommand, link_name: str, duration_s: float | None = None) -> str:
        """Check and carry out one command; returns the reason to report, raises ``Rejected``."""
        now = self.ctx.clock.now()
        if cmd.type == "return_to_plan":
            ended = self.dispatch.clear()
            for ov in ended:
                self._respond(ov.link, ov.command_id, "completed", f"ended by return_to_plan {cmd.id}")
            await self._release(ended)
            return f"back to the plan ({len(ended)} override(s) ended)"
        settings, commands, reason = plan_command(cmd, self.home_view(), self.ctx.config.home)
        source = f"mqtt:{link_name}"
        try:
            async with asyncio.timeout(RESPONSE_DEADLINE_S):
                for device_id, setting, value in commands:
                    await self._send(Command(device_id, setting, value, source=source))
        except TimeoutError:
            raise Rejected(
                f"a device did not take the command within {RESPONSE_DEADLINE_S:g} s", cmd.id
            ) from None
        except CommandError as exc:
            raise Rejected(f"device refused: {exc}", cmd.id) from None
        duration = cmd.duration_s if duration_s is None else duration_s
        ov = Override(
            cmd.id, link_name, cmd.type, settings, commands, now, now + float(duration or 0), reason
        )
        for old in self.dispatch.add(ov):
            self._respond(old.link, old.command_id, "completed", f"replaced by {cmd.id}")
        return f"{reason} for {duration:g} s"

    async def _release(self, ended: list[Override]) -> None:
        """Nothing to send: the controller re-asserts its own decision on its next cycle, because what the bus
        last asked (the dispatch) differs from its decision."""
        return

    async def _handle_ha(self, link: Link, topic: str, payload: bytes) -> None:
        parts = topic[len(self.base) + 1 :].split("/")  # ha/<device>/<control>/set
        if len(parts) != 4:
            return
        device_id, control = parts[1], parts[2]
        text = payload.decode("utf-8", "replace").strip()
        cid = f"ha:{device_id}:{control}:{int(time.time() * 1000)}"
        try:
            if control == "return_to_plan" and device_id == "gateway":
                await self.execute(ParsedCommand(cid, "return_to_plan"), link.cfg.name)
            elif control == "battery_setpoint_w":
                try:
                    value = float(text)
                except ValueError:
                    raise Rejected(f"battery setpoint must be a number, got {text[:40]!r}") from None
                if not math.isfinite(value):
                    raise Rejected("battery setpoint must be finite")
                await self.execute(ParsedCommand(cid, "battery_power", value, HA_OVERRIDE_S), link.cfg.name)
            elif control == "hvac_mode":
                if text not in HVAC_MODES:
                    raise Rejected(f"hvac mode must be one of {', '.join(HVAC_MODES)}, got {text[:40]!r}")
                await self._send(Command(device_id, Setting.HVAC_MODE, text, source=f"mqtt:{link.cfg.name}"))
            elif control == "switch_on":
                if text not in ("ON", "OFF"):
                    raise Rejected(f"switch payload must be ON or OFF, got {text[:40]!r}")
                on = text == "ON"
                command = (device_id, Setting.SWITCH_ON, on)
                await self._send(Command(*command, source=f"mqtt:{link.cfg.name}"))
                now = self.ctx.clock.now()
                ov = Override(
                    cid,
                    link.cfg.name,
                    "switch",
                    {"water_heater_enabled": on},
                    [command],
                    now,
                    now + HA_OVERRIDE_S,
                    f"{device_id} {text}",
                )
                self.dispatch.add(ov)
            else:
                raise Rejected(f"unknown control {control!r}")
            self.log.info(
                "MQTT %s: Home Assistant set %s %s = %s", link.cfg.name, device_id, control, text[:40]
            )
        except (Rejected, CommandError) as exc:
            self.log.warning(
                "MQTT %s: Home Assistant command %s %s refused: %s", link.cfg.name, device_id, control, exc
            )
            self._respond(link.cfg.name, cid, "rejected", str(exc))
        except Exception:
            self.log.exception("MQTT: Home Assistant command failed")
