"""How integrations plug in: an entry point in the ``hems.integrations`` group names a factory.

A factory takes an ``IntegrationContext`` and returns an object with ``async start()`` and ``async stop()``.
It validates its own ``[integrations.<name>]`` table and raises ``ConfigError`` naming the key.
A new protocol is a new package under ``integrations/`` and one entry point in pyproject.toml.
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
    from .livesim import LiveSimHome
    from .store import Store

ENTRY_POINT_GROUP = "hems.integrations"


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
    store: Store | None = None
    sim: LiveSimHome | None = None  # the simulated home, in dev mode
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
                [f"unknown key 'integrations.{self.name}.{k}'; allowed: {', '.join(sorted(allowed)) or 'none'}"
                 for k in unknown]
            )


Factory = Callable[[IntegrationContext], Integration]


def available() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_factory(name: str) -> Factory:
    eps = available()
    if name not in eps:
        raise ConfigError(
            [f"[integrations.{name}]: no such integration; installed: {', '.join(sorted(eps)) or 'none'}"]
        )
    return eps[name].load()
