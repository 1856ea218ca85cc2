"""Command line: ``hems dev``, ``hems simulate``, ``hems config check``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import sys
import warnings

from . import __version__
from .config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hems", description="Home energy management gateway")
    p.add_argument("--version", action="version", version=f"hems {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run the simulated home, the controller and the dashboard")
    dev.add_argument("--config", metavar="FILE", help="TOML config (default: the reference home)")
    dev.add_argument("--port", type=int, help="HTTP port (default 8080; 0 = any free port)")
    dev.add_argument("--host", help="HTTP address to listen on (default 127.0.0.1)")
    dev.add_argument("--speed", type=float, help="simulated time runs this many times faster than real time")
    dev.add_argument(
        "--start", metavar="ISO", help="simulated clock start, local time, e.g. 2026-07-01T06:00"
    )
    dev.add_argument("--data-dir", metavar="DIR", help="where the database goes (default var/dev)")
    dev.add_argument(
        "--strategy", choices=("none", "rules", "planner"), help="controller strategy (default planner)"
    )

    dev.add_argument(
        "--owner-password",
        metavar="PW",
        help="create (or reset) the dashboard's owner account with this password at start (for scripts and tests)",
    )

    run = sub.add_parser(
        "run", help="run the gateway: the real devices of the config, the controller, the dashboard"
    )
    run.add_argument("--config", metavar="FILE", required=True, help="TOML config (e.g. /etc/hems/hems.toml)")

    code = sub.add_parser(
        "setup-code",
        help="print the one-time code the dashboard's setup page asks for (while no owner exists)",
    )
    code.add_argument("--config", metavar="FILE", help="TOML config (for gateway.data_dir)")
    code.add_argument("--data-dir", metavar="DIR", help="the gateway's data directory (overrides the config)")

    sim = sub.add_parser("simulate", help="price the simulated home over N days, in-process at full speed")
    sim.add_argument("--days", type=float, default=7.0, help="days to simulate (default 7)")
    sim.add_argument("--strategy", choices=("none", "rules", "planner", "optimal"), default="rules")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument(
        "--start", default="2026-01-01", metavar="YYYY-MM-DD", help="first local day (default 2026-01-01)"
    )
    sim.add_argument(
        "--step", type=float, default=300.0, metavar="SECONDS", help="physics step (default 300)"
    )
    sim.add_argument("--config", metavar="FILE", help="TOML config describing the home and tariff")
    sim.add_argument("--load-csv", metavar="FILE", help="measured household power: timestamp,power_w rows")
    sim.add_argument("--weather", metavar="FILE", help="a TMY3 weather file (replaces the synthetic weather)")
    sim.add_argument(
        "--tariff", metavar="FILE", help="a TOML tariff file (TOU by season, export, demand charge)"
    )
    sim.add_argument(
        "--dr-event",
        action="append",
        default=[],
        metavar="START,HOURS,CAP_KW",
        help="a utility DR event (import cap), e.g. 2026-07-07T17:00,2,2.5; repeatable",
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object")

    peer = sub.add_parser("sim", help="run one protocol's simulated device standalone: hems sim NAME --help")
    peer.add_argument("name", help="integration name, e.g. sunspec or ocpp")
    peer.add_argument("args", nargs=argparse.REMAINDER, help="the simulator's own options")

    bench = sub.add_parser("bench", help="run a benchmark and print its figures: hems bench NAME --json")
    bench.add_argument("name", help="benchmark name, e.g. planner, sunspec, ocpp")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = cfg_sub.add_parser("check", help="validate a config file without starting")
    check.add_argument("file")
    return p


def main(argv: list[str] | None = None) -> int:
    # signxml (under the OpenADR library) warns at import that DSA is deprecated: OpenADR 2.0b certificates are
    # RSA or ECDSA, never DSA, and the warning is noise on every start
    warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"signxml\.")
    args = _parser().parse_args(argv)
    try:
        if args.command == "dev":
            return _dev(args)
        if args.command == "run":
            return _run(args)
        if args.command == "setup-code":
            return _setup_code(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "config":
            return _config_check(args)
        if args.command in ("sim", "bench"):
            return _entry_point_main(args)
    except ConfigError as exc:
        print(f"hems: {exc}", file=sys.stderr)
        return 2
    return 1


def _entry_point_main(args) -> int:
    """``hems sim NAME`` and ``hems bench NAME`` run what the integration registered for them."""
    from .integration import BENCHMARK_GROUP, SIMULATOR_GROUP, available

    group = SIMULATOR_GROUP if args.command == "sim" else BENCHMARK_GROUP
    found = available(group)
    if args.name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        print(
            f"hems {args.command}: no {args.command} named {args.name!r}; available: {known}", file=sys.stderr
        )
        return 2
    return int(found[args.name].load()(list(args.args)) or 0)


def _config_check(args) -> int:
    config = load_config(args.file)
    from .integration import load_factory

    for name in config.integrations:
        load_factory(name)  # an unknown integration is a config error too
    print(
        f"{args.file}: ok ({len(config.integrations)} integration(s): {', '.join(config.integrations) or 'none'})"
    )
    return 0


def _dev(args) -> int:
    config = load_config(args.config)
    web = config.web
    if args.port is not None:
        web = dataclasses.replace(web, port=args.port)
    if args.host is not None:
        web = dataclasses.replace(web, host=args.host)
    sim = config.sim
    if args.speed is not None:
        if args.speed <= 0:
            raise ConfigError([f"--speed {args.speed}: must be > 0"])
        sim = dataclasses.replace(sim, speed=args.speed)
    if args.start is not None:
        sim = dataclasses.replace(sim, start=args.start)
    gateway = dataclasses.replace(config.gateway, data_dir=args.data_dir or "var/dev")
    controller = config.controller
    if args.strategy:
        controller = dataclasses.replace(controller, strategy=args.strategy)
    config = dataclasses.replace(config, web=web, sim=sim, gateway=gateway, controller=controller)
    _logging(config)
    from .livesim import parse_sim_start
    from .runtime import Runtime, run_forever

    try:
        parse_sim_start(config.sim.start, config.home.site.timezone)
    except ValueError as exc:
        raise ConfigError([f"sim.start = {config.sim.start!r}: {exc}"]) from exc
    runtime = Runtime.for_dev(config)
    if args.owner_password is not None:
        from web.auth import Accounts, AuthError

        try:
            Accounts.check_password(args.owner_password, "owner")
        except AuthError as exc:
            raise ConfigError([f"--owner-password: {exc}"]) from exc
        runtime.owner_password = args.owner_password

    def started(rt) -> None:
        print(
            f"HEMS dev mode: simulated home running at {config.sim.speed:g}x, data in {config.gateway.data_dir}"
        )
        print(f"Dashboard: {rt.url}/   status: {rt.url}/api/status   health: {rt.url}/healthz", flush=True)
        code = rt.accounts.setup_code() if rt.accounts else None
        if code:
            print(f"First visit: open {rt.url}/setup and enter the setup code {code}", flush=True)
        else:
            print("Log in as the owner (hems dev --owner-password PW sets the password at start)", flush=True)

    try:
        asyncio.run(run_forever(runtime, on_started=started))
    except OSError as exc:
        print(f"hems: cannot listen on {config.web.host}:{config.web.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _logging(config) -> None:
    logging.basicConfig(
        level=getattr(logging, config.gateway.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _run(args) -> int:
    """The production service (systemd runs it): real clock, the devices of the config, no simulation."""
    config = load_config(args.config)
    _logging(config)
    from .runtime import Runtime, run_forever

    runtime = Runtime(config=config)

    def started(rt) -> None:
        print(f"HEMS gateway {config.gateway.id} running; dashboard: {rt.url}/", flush=True)

    try:
        asyncio.run(run_forever(runtime, on_started=started))
    except OSError as exc:
        print(f"hems: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _setup_code(args) -> int:
    import sqlite3
    from pathlib import Path

    from web.auth import ensure_setup_code, setup_code_path

    data_dir = args.data_dir or load_config(args.config).gateway.data_dir
    db = Path(data_dir) / "hems.sqlite"
    users: dict = {}
    if db.exists():  # read-only: the running service is the database's only writer
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                row = conn.execute("SELECT value FROM kv WHERE key = 'auth.users'").fetchone()
            users = json.loads(row[0]) if row else {}
        except sqlite3.Error as exc:
            print(f"hems setup-code: cannot read {db}: {exc}", file=sys.stderr)
            return 1
    if any(u.get("role") == "owner" for u in users.values()):
        setup_code_path(data_dir).unlink(missing_ok=True)
        print("the gateway is already set up: log in to the dashboard as its owner", file=sys.stderr)
        return 1
    print(ensure_setup_code(data_dir))
    return 0


def _simulate(args) -> int:
    from .simulate import SimulationSpec, parse_dr_event, simulate

    config = load_config(args.config)
    if args.tariff:
        from .tariff import Tariff, TariffError

        try:
            config = dataclasses.replace(
                config, tariff=Tariff.load(args.tariff, timezone=config.home.site.timezone)
            )
        except (TariffError, OSError) as exc:
            raise ConfigError([f"--tariff {args.tariff}: {exc}"]) from exc
    if args.days <= 0:
        raise ConfigError([f"--days {args.days}: must be > 0"])
    if args.step <= 0 or 86400 % args.step:
        raise ConfigError([f"--step {args.step}: must divide a day into whole steps (e.g. 60, 300, 900)"])
    try:
        spec = SimulationSpec(
            days=args.days,
            strategy=args.strategy,
            seed=args.seed,
            start=args.start,
            step_s=args.step,
            load_csv=args.load_csv,
            weather_file=args.weather,
            dr_events=tuple(parse_dr_event(e, config.home.site.timezone) for e in args.dr_event),
        )
        result = simulate(config.home, config.tariff, spec)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from exc
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
