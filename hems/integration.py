"""How integrations plug in: entry points, found at run time, so that the core never imports them.

Entry-point groups (all keyed by the integration's name):

- ``hems.integrations`` — ``create(ctx: IntegrationContext) -> Integration``: an object with ``async start()`` and
  ``async stop()``. It validates its ``[integrations.<name>]`` table (``ctx.section``) and its ``[[devices]]``
  entries with ``type = "<name>"`` (``ctx.devices``) and raises ``ConfigError`` naming the key.
- ``hems.dev_peers`` — ``async dev_peer(ctx: DevPeerContext) -> DevPeer``: in dev mode, start the simulated
  device that speaks this protocol on loopback, driven by the simulated home, and say how to connect to it.
- ``hems.simulators`` — ``main(argv: list[str]) -> int``: ``hems sim <name> ...`` runs the simulated peer standalone.
- ``hems.benchmarks`` — ``main(argv: list[str]) -> int``: ``hems bench <name> ...`` prints its figures.

A new protocol is a new package under ``integrations/`` and its entry points in pyproject.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol

from .bus import Bus
from .clock import Clock
from .config import Config, ConfigError

if TYPE_CHECKING:
    from .dr import DRManager
    from .livesim import LiveSimHome
    from .store import Store

ENTRY_POINT_GROUP = "hems.integrations"
DEV_PEER_GROUP = "hems.dev_peers"
SIMULATOR_GROUP = "hems.simulators"
BENCHMARK_GROUP = "hems.benchmarks"


class Integration(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class IntegrationContext:
    name: str
    bus: Bus
    clock: Clock
    config: Config
    section: dict[str, Any]
    devices: list[dict[str, Any]] = field(default_factory=list)  # [[devices]] entries of this type
    store: Store | None = None
    sim: LiveSimHome | None = None  # the simulated home, in dev mode
    dr: DRManager | None = None  # the one DR event lifecycle every DR source feeds
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("integrations"))

    def option(self, key: str, default: Any, kind: type | tuple[type, ...], allowed: str = "") -> Any:
        """Read one key of this integration's table, with a ConfigError naming it when the type is wrong."""
        value = self.section.get(key, default)
        if isinstance(value, bool) and kind in (int, float):
            ok = False
        elif kind is float and isinstance(value, int):
            value, ok = float(value), True
        else:
            ok = isinstance(value, kind)
        if not ok:
            what = allowed or getattr(kind, "__name__", str(kind))
            raise ConfigError([f"integrations.{self.name}.{key} = {value!r}: must be {what}"])
        return value

    def reject_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.section) - allowed)
        if unknown:
            raise ConfigError(
                [
                    f"unknown key 'integrations.{self.name}.{k}'; allowed: {', '.join(sorted(allowed)) or 'none'}"
                    for k in unknown
                ]
            )


Factory = Callable[[IntegrationContext], Integration]


class DRLink:
    """The DR manager a DR source feeds: the runtime's (``ctx.dr``), or, when an integration runs on its own
    (a standalone tool, a test), a private one on the context's store that this link starts and stops."""

    def __init__(self, ctx: IntegrationContext) -> None:
        from .dr import DRManager
        from .store import Store

        self._own_store: Store | None = None
        self.owned = ctx.dr is None
        if ctx.dr is not None:
            self.dr: DRManager = ctx.dr
            return
        store = ctx.store
        if store is None:
            ctx.log.warning("%s: no store; DR events will not survive a restart", ctx.name)
            store = self._own_store = Store(":memory:")
        self.dr = DRManager(store, clock=ctx.clock, timezone=ctx.config.home.site.timezone)

    def start(self) -> None:
        if self.owned:
            self.dr.start()

    async def stop(self) -> None:
        if self.owned:
            await self.dr.stop()
        if self._own_store is not None:
            self._own_store.close()


@dataclass
class DevPeerContext:
    """What a simulated peer gets in dev mode: the simulated home to act on and where to listen."""

    sim: LiveSimHome
    clock: Clock
    host: str = "127.0.0.1"
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("integrations.dev"))


class DevPeer(Protocol):
    replaces: set[str]  # ids of the built-in sim devices this peer takes over (e.g. {"inverter"})
    section: dict[str, Any]  # the [integrations.<name>] table that points the integration at the peer
    devices: list[dict[str, Any]]  # [[devices]] entries (with "type") for the integration

    async def stop(self) -> None: ...


def available(group: str = ENTRY_POINT_GROUP) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load_factory(name: str) -> Factory:
    eps = available()
    if name not in eps:
        raise ConfigError(
            [f"[integrations.{name}]: no such integration; installed: {', '.join(sorted(eps)) or 'none'}"]
        )
    return eps[name].load()
