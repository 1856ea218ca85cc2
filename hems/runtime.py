"""The composition root: builds the gateway from its config and runs it.

This is the one core module that wires ``integrations`` (through entry points) and ``web``; every
other core module knows neither.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field, replace

from . import __version__
from .bus import Bus
from .clock import Clock, RealClock, SimClock
from .config import Config
from .controller import Controller
from .dr import DRManager
from .integration import (
    DEV_PEER_GROUP,
    DevPeerContext,
    Integration,
    IntegrationContext,
    available,
    load_factory,
)
from .livesim import LiveSimHome, parse_sim_start
from .model import DeviceStatus
from .mpc import PlannerStrategy, plan_to_json
from .recorder import Recorder
from .rules import NoControlStrategy, RulesStrategy
from .store import Store

log = logging.getLogger("hems")


def _noop(*args) -> None:
    return None


@dataclass
class Runtime:
    config: Config
    dev: bool = False
    clock: Clock = field(default_factory=RealClock)
    # dev mode: which integrations' simulated peers to start ("*" = every installed one)
    use_dev_peers: frozenset[str] = frozenset({"*"})
    started_monotonic: float = field(default_factory=time.monotonic)
    # `hems dev --owner-password`: the owner account exists with this password from the start
    owner_password: str | None = None

    def __post_init__(self) -> None:
        self.bus = Bus(self.clock)
        self.store: Store | None = None
        self.sim: LiveSimHome | None = None
        self.integrations: list[Integration] = []
        self.controller: Controller | None = None
        self.recorder: Recorder | None = None
        self.web_runner = None
        self.url = ""
        self.dev_peers: list = []
        self.latest_plan: dict | None = None
        self.dr: DRManager | None = None
        self.accounts = None  # web.auth.Accounts, made with the web server

    @classmethod
    def for_dev(cls, config: Config) -> Runtime:
        start = parse_sim_start(config.sim.start, config.home.site.timezone)
        clock: Clock = (
            SimClock(start=start, speed=config.sim.speed)
            if (start or config.sim.speed != 1.0)
            else RealClock()
        )
        return cls(config=config, dev=True, clock=clock)

    def strategy(self):
        name = self.config.controller.strategy
        if name == "none":
            return NoControlStrategy()
        if name == "rules":
            return RulesStrategy(self.config.tariff, self.config.home)
        strategy = PlannerStrategy(
            self.config.tariff, self.config.home, replan_s=self.config.controller.replan_s, dr=self.dr
        )
        strategy.on_plan.append(self._store_plan)
        return strategy

    def _on_dr_change(self, event, notice) -> None:
        """Any DR change re-plans and runs the controller at once, not at their next cycle."""
        if self.controller is None:
            return
        getattr(self.controller.strategy, "request_replan", _noop)(f"DR {notice}: {event.key}")
        self.controller.poke()

    def _dr_limit(self, now: float) -> tuple[float | None, str, object]:
        """The controller's DR inputs: the tightest import cap, the events setting it, the SIMPLE level response."""
        if self.dr is None:
            return None, "", None
        events = ",".join(e.event_id for e in self.dr.in_force(now))
        return (
            self.dr.controller_limit_w(now),
            events,
            self.dr.level_in_force(now),
            self.dr.controller_export_cap_w(now),
            self.dr.controller_generation_cap_w(now),
        )

    def _store_plan(self, plan, inputs, reason: str) -> None:
        """Every plan is kept with the forecast it used: the latest in full, each one as a summary event."""
        full = plan_to_json(plan, inputs, reason)
        self.latest_plan = full
        if self.store is None:
            return
        self.store.kv_set("plan.latest", full)
        self.store.add_event(
            "plan",
            {
                "reason": reason,
                "status": plan.status,
                "cost": full["cost"],
                "solve_ms": full["solve_ms"],
                "start_ts": plan.start_ts,
                "first_step_reasons": full["reasons"][0] if full["reasons"] else [],
            },
            ts=self.clock.now(),
            source="planner",
        )

    async def start(self, *, serve_web: bool = True) -> None:
        cfg = self.config
        self.store = Store(
            cfg.store_path,
            raw_retention_days=cfg.store.raw_retention_days,
            rollup_1m_retention_days=cfg.store.rollup_1m_retention_days,
        )
        self.recorder = Recorder(self.bus, self.store)
        self.dr = DRManager(self.store, clock=self.clock, timezone=cfg.home.site.timezone)
        self.dr.start()
        if self.dev:
            self.sim = LiveSimHome(cfg.home, self.clock, seed=cfg.sim.seed, tick_s=cfg.sim.tick_s)
            cfg = self.config = await self._start_dev_peers(cfg)
        names = cfg.integration_names()
        if not self.dev and "sim" in names:  # the simulated home exists only in dev mode
            log.info("integration sim skipped: it serves the simulated home of `hems dev` only")
            names.remove("sim")
        for name in names:
            factory = load_factory(name)
            ctx = IntegrationContext(
                name=name,
                bus=self.bus,
                clock=self.clock,
                config=cfg,
                section=dict(cfg.integrations.get(name, {})),
                devices=cfg.devices_of(name),
                store=self.store,
                sim=self.sim,
                dr=self.dr,
                log=logging.getLogger(f"integrations.{name}"),
            )
            integration = factory(ctx)
            await integration.start()
            self.integrations.append(integration)
            log.info("integration %s started", name)
        if self.sim is not None:
            self.sim.start()
        self.recorder.start()
        strategy = self.strategy()
        self.dr.on_change(self._on_dr_change)
        self.controller = Controller(
            self.bus, strategy, cfg.home, interval_s=cfg.controller.interval_s, dr_limit=self._dr_limit
        )
        for (
            integration
        ) in self.integrations:  # e.g. MQTT VPP dispatch: held setpoints, still under the limits
            dispatch = getattr(integration, "dispatch", None)
            if dispatch is not None and hasattr(dispatch, "active_override"):
                self.controller.overrides.append(dispatch.active_override)
            if callable(getattr(integration, "der_limits", None)):  # e.g. IEEE 2030.5 DER controls
                self.controller.der_limits.append(integration.der_limits)
        self.controller.start()
        if serve_web:
            await self._start_web()

    async def _start_dev_peers(self, cfg: Config) -> Config:
        """Dev mode: each protocol's simulated peer takes over its device from the built-in sim integration,
        and the real integration is pointed at it over loopback."""
        if not self.use_dev_peers:
            return cfg
        integrations = {k: dict(v) for k, v in cfg.integrations.items()}
        devices = list(cfg.devices)
        replaced: set[str] = set()
        for name, ep in sorted(available(DEV_PEER_GROUP).items()):
            if name not in self.use_dev_peers and "*" not in self.use_dev_peers:
                continue
            ctx = DevPeerContext(
                sim=self.sim, clock=self.clock, log=logging.getLogger(f"integrations.{name}.sim")
            )
            peer = await ep.load()(ctx)
            self.dev_peers.append(peer)
            replaced |= set(peer.replaces)
            # where the peer listens wins over the file: the simulated device dials exactly that
            integrations[name] = {**integrations.get(name, {}), **peer.section}
            devices.extend(peer.devices)
            if peer.replaces:
                who = ", ".join(sorted(peer.replaces))
                log.info("dev mode: %s served over %s by its simulated peer", who, name)
            else:
                log.info("dev mode: %s talks to its simulated peer", name)
        if "sim" in integrations and replaced:
            exclude = set(integrations["sim"].get("exclude", [])) | replaced
            integrations["sim"]["exclude"] = sorted(exclude)
        return replace(cfg, integrations=integrations, devices=tuple(devices))

    async def _start_web(self) -> None:
        from aiohttp import web as aioweb

        from web.app import create_app
        from web.auth import Accounts

        cfg = self.config.web
        self.accounts = Accounts(
            self.store, self.config.gateway.data_dir, session_idle_s=cfg.session_idle_h * 3600.0
        )
        if self.owner_password is not None:
            await self.accounts.ensure_owner(self.owner_password)
        code = self.accounts.setup_code()
        if code is not None:
            log.warning(
                "no owner account yet: open the dashboard's /setup page and enter the setup code %s", code
            )
        app = create_app(self, self.accounts)
        self.web_runner = aioweb.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        ssl_context = None
        if cfg.tls_cert:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            except (OSError, ssl.SSLError) as exc:
                from .config import ConfigError

                raise ConfigError([f"web.tls_cert/web.tls_key: cannot load {cfg.tls_cert}: {exc}"]) from exc
        site = aioweb.TCPSite(self.web_runner, cfg.host, cfg.port, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # the real port when 0 asked for a free one
        host = cfg.host if cfg.host not in ("0.0.0.0", "::") else "127.0.0.1"
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{port}"

    async def stop(self) -> None:
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        if self.controller is not None:
            await self.controller.stop()
        if self.sim is not None:
            await self.sim.stop()
        for integration in reversed(self.integrations):
            try:
                await integration.stop()
            except Exception:
                log.exception("integration %s failed to stop cleanly", integration.name)
        for peer in reversed(self.dev_peers):
            try:
                await peer.stop()
            except Exception:
                log.exception("simulated peer failed to stop cleanly")
        if self.dr is not None:
            await self.dr.stop()
        if self.recorder is not None:
            await self.recorder.stop()
        if self.store is not None:
            self.store.close()

    # -- what the web and monitoring see -----------------------------------------------------------
    def health(self) -> dict:
        counts = {str(s): 0 for s in DeviceStatus}
        for device in self.bus.devices():
            counts[str(self.bus.status(device.info.device_id)[0])] += 1
        controller_ok = (
            self.controller is not None
            and self.controller._task is not None
            and not self.controller._task.done()
        )
        return {
            "status": "ok" if controller_ok else "starting",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 1),
            "devices": counts,
        }

    def status(self) -> dict:
        now = self.clock.now()
        point = self.config.tariff.at(now)
        snapshot = self.bus.snapshot()
        devices = []
        for device in self.bus.devices():
            info = device.info
            status, reason = self.bus.status(info.device_id)
            readings = {
                q: {"value": r.value, "unit": r.unit, "ts": r.ts}
                for q, r in sorted(snapshot.get(info.device_id, {}).items())
                if q != "status"
            }
            devices.append(
                {**info.to_json(), "status": str(status), "status_reason": reason, "readings": readings}
            )
            if (firmware := self.bus.firmware(info.device_id)) is not None:
                devices[-1]["firmware"] = firmware.to_json()
        return {
            "gateway": {
                "id": self.config.gateway.id,
                "version": __version__,
                "mode": "dev" if self.dev else "live",
                "time": now,
                "timezone": self.config.home.site.timezone,
                "clock_speed": self.clock.speed,
            },
            "tariff": {
                "period": point.period,
                "import_price_per_kwh": point.import_price_per_kwh,
                "export_price_per_kwh": point.export_price_per_kwh,
                "currency": self.config.tariff.currency,
            },
            "controller": self.controller.status.to_json() if self.controller else None,
            "dr_events": [e.to_json() for e in self.dr.events(include_terminal=False)] if self.dr else [],
            "devices": devices,
        }


async def run_forever(runtime: Runtime, *, on_started=None) -> None:
    """Start, wait for SIGINT/SIGTERM, stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - not on POSIX
            pass
    await runtime.start()
    if on_started is not None:
        on_started(runtime)
    try:
        await stop.wait()
    finally:
        await runtime.stop()
