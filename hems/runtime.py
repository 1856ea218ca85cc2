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
from .settings import (
    CloudLink,
    UserSettings,
    apply_patch,
    describe_change,
    from_home,
    from_stored,
    home_with,
)
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
        self.settings: UserSettings | None = None  # the homeowner's settings (the dashboard edits them)
        self._base_home = self.config.home  # the config file's home, before the homeowner's settings
        self._settings_lock = asyncio.Lock()

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
        # a plan is made again within minutes: not worth an fsync each (an SD card's wear, a Pi's I/O)
        self.store.kv_set("plan.latest", full, durable=False)
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
            durable=False,
        )

    async def start(self, *, serve_web: bool = True) -> None:
        cfg = self.config
        self.store = Store(
            cfg.store_path,
            raw_retention_days=cfg.store.raw_retention_days,
            rollup_1m_retention_days=cfg.store.rollup_1m_retention_days,
        )
        self.recorder = Recorder(self.bus, self.store)
        cfg = self.config = self._load_settings(cfg)
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
            integration = factory(self._context(name, cfg))
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
        self.controller.export_limit_w = self.settings.export_limit_w
        if isinstance(strategy, PlannerStrategy):
            strategy.export_limit_w = self.settings.export_limit_w
        for integration in self.integrations:
            self._hook_controller(integration)
        self.controller.start()
        if serve_web:
            await self._start_web()

    def _hook_controller(self, integration, *, unhook: bool = False) -> None:
        """An integration's inputs to the controller: a VPP dispatch's held setpoints (MQTT), a utility's DER
        limits (IEEE 2030.5). ``unhook`` removes them (the integration is being replaced)."""
        pairs = []
        dispatch = getattr(integration, "dispatch", None)
        if dispatch is not None and hasattr(dispatch, "active_override"):
            pairs.append((self.controller.overrides, dispatch.active_override))
        if callable(getattr(integration, "der_limits", None)):
            pairs.append((self.controller.der_limits, integration.der_limits))
        for hooks, fn in pairs:
            if unhook:
                hooks[:] = [h for h in hooks if h != fn]
            else:
                hooks.append(fn)

    # -- the homeowner's settings -------------------------------------------------------------------------
    def _load_settings(self, cfg: Config) -> Config:
        """The config's values, overlaid with what the homeowner saved from the dashboard."""
        base = from_home(cfg.home, cfg.tariff, _cloud_from_config(cfg))
        saved = self.store.get_setting("user", None) if self.store else None
        self.settings = from_stored(saved, base, cfg.home) if isinstance(saved, dict) else base
        return self._config_with(cfg, self.settings)

    def _config_with(self, cfg: Config, s: UserSettings) -> Config:
        integrations = {k: dict(v) for k, v in cfg.integrations.items()}
        if s.cloud.mqtt_enabled:
            section = integrations.setdefault("mqtt", {})
            links = [dict(link) for link in section.get("links", []) if link.get("name") != "cloud"]
            link = {
                "name": "cloud",
                "host": s.cloud.mqtt_host,
                "port": s.cloud.mqtt_port,
                "tls": s.cloud.mqtt_tls,
            }
            if s.cloud.mqtt_username:
                link["username"] = s.cloud.mqtt_username
            if s.cloud.mqtt_password:
                link["password"] = s.cloud.mqtt_password
            section["links"] = [link, *links]
        elif "mqtt" in integrations:
            links = [ln for ln in integrations["mqtt"].get("links", []) if ln.get("name") != "cloud"]
            if links:
                integrations["mqtt"]["links"] = links
            else:
                del integrations["mqtt"]
        return replace(cfg, home=home_with(self._base_home, s), tariff=s.tariff, integrations=integrations)

    def settings_json(self) -> dict:
        return self.settings.to_json() if self.settings else {}

    async def update_settings(self, patch: dict) -> dict:
        """Validate and apply a change from the dashboard; the next plan uses it (a re-plan starts now).

        Raises :class:`hems.settings.SettingsError` naming every bad field; then nothing changes."""
        async with self._settings_lock:
            old = self.settings
            new = apply_patch(old, patch, self._base_home)
            new_cfg = self._config_with(self.config, new)
            if new.cloud != old.cloud:
                await self._restart_integration("mqtt", new_cfg)
            self.settings = new
            self.config = new_cfg
            if self.store is not None:
                self.store.set_setting("user", new.stored(), ts=self.clock.now())
                change = describe_change(old, new)
                self.store.add_event("settings", {"change": change}, ts=self.clock.now(), source="dashboard")
            if self.controller is not None:
                self.controller.params = new_cfg.home
                self.controller.export_limit_w = new.export_limit_w
                strategy = self.controller.strategy
                if isinstance(strategy, PlannerStrategy):
                    strategy.set_home(new_cfg.home, new_cfg.tariff, new.export_limit_w)
                    strategy.request_replan(f"settings changed: {describe_change(old, new)}")
                elif isinstance(strategy, RulesStrategy):
                    strategy.params, strategy.tariff = new_cfg.home, new_cfg.tariff
                self.controller.poke()
            log.info("settings changed: %s", describe_change(old, new))
            return new.to_json()

    async def _restart_integration(self, name: str, cfg: Config) -> None:
        """Stop ``name`` and start it again from ``cfg`` (e.g. the cloud link's broker changed)."""
        old = next((i for i in self.integrations if getattr(i, "name", None) == name), None)
        if name in cfg.integrations:
            factory = load_factory(name)
            new = factory(self._context(name, cfg))  # a bad section raises here, before anything stops
        else:
            new = None
        if old is not None:
            if self.controller is not None:
                self._hook_controller(old, unhook=True)
            await old.stop()
            self.integrations.remove(old)
        if new is not None:
            await new.start()
            self.integrations.append(new)
            if self.controller is not None:
                self._hook_controller(new)
            log.info("integration %s restarted with new settings", name)

    def _context(self, name: str, cfg: Config) -> IntegrationContext:
        return IntegrationContext(
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

    # -- commissioning (the installer's device page) ---------------------------------------------------
    def commission_actions(self) -> list[dict]:
        """What the installer can do to add or pair devices, from every integration that offers it."""
        actions = []
        for integration in self.integrations:
            offer = getattr(integration, "commission_actions", None)
            if callable(offer):
                for action in offer():
                    actions.append({"integration": integration.name, **action})
        return actions

    async def commission(self, integration: str, action: str, params: dict) -> dict:
        target = next((i for i in self.integrations if i.name == integration), None)
        if target is None or not callable(getattr(target, "commission", None)):
            known = sorted({a["integration"] for a in self.commission_actions()})
            raise ValueError(
                f"no integration {integration!r} that commissions devices; running: {', '.join(known) or 'none'}"
            )
        offered = {a.get("action") for a in target.commission_actions()}
        if action not in offered:
            raise ValueError(
                f"{integration} has no action {action!r}; it offers: {', '.join(sorted(offered))}"
            )
        if not isinstance(params, dict):
            raise ValueError("params must be a JSON object")
        result = await target.commission(action, params)
        if self.store is not None:
            self.store.add_event(
                "commission",
                {"integration": integration, "action": action},
                ts=self.clock.now(),
                source="web",
            )
        return result

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
        # shutdown waits at most 5 s for open requests: live-stream WebSockets never end by themselves
        self.web_runner = aioweb.AppRunner(app, access_log=None, shutdown_timeout=5.0)
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


def _cloud_from_config(cfg: Config) -> CloudLink:
    """The config file's MQTT link named "cloud", as the dashboard shows it."""
    for link in cfg.integrations.get("mqtt", {}).get("links", []) or []:
        if isinstance(link, dict) and link.get("name") == "cloud":
            return CloudLink(
                mqtt_enabled=True,
                mqtt_host=str(link.get("host", "")),
                mqtt_port=int(link.get("port", 1883)),
                mqtt_username=str(link.get("username") or ""),
                mqtt_password=str(link.get("password") or ""),
                mqtt_tls=bool(link.get("tls", False)),
            )
    return CloudLink()


async def run_forever(runtime: Runtime, *, on_started=None, notifier=None) -> None:
    """Start, wait for SIGINT/SIGTERM, stop cleanly.

    Under systemd (Type=notify) it says READY=1 once started and feeds the watchdog at half of
    $WATCHDOG_USEC, but only while the controller loop is healthy: a hung loop or a dead controller stops
    the pings, and systemd restarts the service."""
    from .sdnotify import Notifier

    notifier = notifier if notifier is not None else Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - not on POSIX
            pass
    watchdog: asyncio.Task | None = None
    try:
        await runtime.start()
        if on_started is not None:
            on_started(runtime)
        notifier.ready(f"running; dashboard {runtime.url}/" if runtime.url else "running")
        if notifier.watchdog_interval_s:
            watchdog = asyncio.create_task(_feed_watchdog(runtime, notifier, notifier.watchdog_interval_s))
        await stop.wait()
    finally:
        notifier.stopping("stopping")
        if watchdog is not None:
            watchdog.cancel()
        await runtime.stop()


async def _feed_watchdog(runtime: Runtime, notifier, interval_s: float) -> None:
    was_ok = True
    while True:
        health = runtime.health()
        ok = health.get("status") == "ok"
        if ok:
            notifier.watchdog()
        if ok != was_ok:  # say it once per change, not every tick
            if ok:
                notifier.status("running")
                log.info("controller healthy again: watchdog fed")
            else:
                notifier.status(f"unhealthy ({health.get('status')}): watchdog not fed")
                log.error(
                    "controller loop not healthy (%s): the watchdog is no longer fed", health.get("status")
                )
            was_ok = ok
        await asyncio.sleep(interval_s)
