"""An async SunSpec Modbus TCP client on pymodbus: discovery, batched reads, point writes with read-back.

It knows SunSpec, not HEMS: ``device.py`` maps what it reads onto the gateway's capabilities.

- Discovery looks for the "SunS" marker at 40000, 0 and 50000, then walks the model chain to the end marker
  (0xFFFF), decoding every model from its SunSpec definition. A chain that never ends, runs off the address
  space or breaks off is reported as ``Garbage``, with what was wrong.
- Reads are planned: the models asked for are packed into as few requests as the 125-register limit allows;
  a model is only split when it is itself longer than one request, and then between points.
- Errors come in three kinds: ``Unreachable`` (no connection, timeout), ``DeviceRefused`` (a Modbus exception
  response) and ``Garbage`` (answers that cannot be right).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .models import (
    END_MODEL_ID,
    MAX_REGS_PER_READ,
    SUNS_MARKER,
    GroupDef,
    Model,
    ModelError,
    decode_model,
    encode_point,
    fixed_points,
)

log = logging.getLogger(__name__)

BASE_ADDRESSES = (40000, 0, 50000)
MAX_MODELS = 64  # a real device has a dozen or two; more means the chain does not end
ADDRESS_SPACE = 0x10000
MAX_REGS_PER_WRITE = 123


class SunSpecError(Exception):
    """Base of the client's errors; the message says what happened, where."""


class Unreachable(SunSpecError):
    """No connection, or no answer in time."""


class DeviceRefused(SunSpecError):
    """The device answered a request with a Modbus exception."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Garbage(SunSpecError):
    """The device answered something that cannot be right (no marker, a broken chain, a changed map)."""


@dataclass
class DeviceMap:
    """What discovery found: the base address and every model in chain order, decoded."""

    base: int
    models: list[Model]
    problems: list[str] = field(default_factory=list)

    def find(self, model_id: int) -> Model | None:
        for model in self.models:
            if model.id == model_id:
                return model
        return None

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.models]


class SunSpecClient:
    def __init__(
        self,
        host: str,
        port: int = 502,
        unit_id: int = 1,
        *,
        timeout_s: float = 3.0,
        bases: Iterable[int] = BASE_ADDRESSES,
        max_models: int = MAX_MODELS,
    ) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.bases = tuple(bases)
        self.max_models = max_models
        self.requests = 0  # Modbus requests sent (reads and writes), for benchmarks and tests
        self._client: AsyncModbusTcpClient | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port} unit {self.unit_id}"

    # -- connection ----------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        self.close()
        # reconnect_delay=0: no reconnecting behind our back; the caller retries with its own backoff
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )
        try:
            ok = await client.connect()  # bounded by timeout= (pymodbus's own connect timeout)
        except (TimeoutError, OSError, ModbusException) as exc:
            client.close()
            raise Unreachable(f"cannot connect to {self}: {exc or type(exc).__name__}") from exc
        if not ok:
            client.close()
            raise Unreachable(f"cannot connect to {self}: connection refused or timed out")
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- raw registers -------------------------------------------------------------------------------
    async def read(self, addr: int, count: int) -> list[int]:
        if count < 1 or count > MAX_REGS_PER_READ or addr < 0 or addr + count > ADDRESS_SPACE:
            raise ValueError(f"cannot read {count} registers at {addr}")
        client = self._require()
        self.requests += 1
        try:
            rr = await client.read_holding_registers(addr, count=count, device_id=self.unit_id)
        except (TimeoutError, OSError, ModbusException) as exc:
            self.close()
            raise Unreachable(f"{self}: no answer reading {count} registers at {addr}: {exc}") from exc
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise DeviceRefused(
                f"{self}: reading {count} registers at {addr} refused (exception {code})", code
            )
        regs = list(rr.registers)
        if len(regs) < count:
            raise Garbage(f"{self}: asked {count} registers at {addr}, got {len(regs)}")
        return regs[:count]

    async def write(self, addr: int, values: list[int]) -> None:
        if not values or len(values) > MAX_REGS_PER_WRITE or addr < 0 or addr + len(values) > ADDRESS_SPACE:
            raise ValueError(f"cannot write {len(values)} registers at {addr}")
        client = self._require()
        self.requests += 1
        try:
            rr = await client.write_registers(addr, list(values), device_id=self.unit_id)
        except (TimeoutError, OSError, ModbusException) as exc:
            self.close()
            raise Unreachable(f"{self}: no answer writing {len(values)} registers at {addr}: {exc}") from exc
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise DeviceRefused(
                f"{self}: writing {len(values)} registers at {addr} refused (exception {code})", code
            )

    def _require(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            self.close()
            raise Unreachable(f"not connected to {self}")
        return self._client

    # -- discovery -----------------------------------------------------------------------------------
    async def discover(self) -> DeviceMap:
        base = None
        tried = []
        for candidate in self.bases:
            try:
                regs = await self.read(candidate, 2)
            except DeviceRefused as exc:
                tried.append(f"{candidate}: refused (exception {exc.code})")
                continue
            if tuple(regs) == SUNS_MARKER:
                base = candidate
                break
            tried.append(f"{candidate}: {regs[0]:04X} {regs[1]:04X}")
        if base is None:
            raise Garbage(f"{self}: no SunSpec 'SunS' marker ({'; '.join(tried)})")
        reader = _ReadAhead(self)
        addr = base + 2
        models: list[Model] = []
        problems: list[str] = []
        while True:
            try:
                (model_id,) = await reader.get(addr, 1)
                if model_id == END_MODEL_ID:
                    break
                if len(models) >= self.max_models:
                    raise Garbage(
                        f"{self}: the model chain from {base} did not end after {self.max_models} models "
                        f"(no end marker 0xFFFF; model {model_id} at {addr})"
                    )
                (length,) = await reader.get(addr + 1, 1)
                if addr + 2 + length > ADDRESS_SPACE:
                    raise Garbage(
                        f"{self}: model {model_id} at {addr} has L={length}, past the end of the address space "
                        "(the model chain has no end marker)"
                    )
                regs = await reader.get(addr, length + 2)
            except DeviceRefused as exc:
                raise Garbage(
                    f"{self}: the model chain breaks off at {addr} after models {[m.id for m in models]}: "
                    f"reading there is refused (exception {exc.code}), and there was no end marker 0xFFFF"
                ) from exc
            model = decode_model(model_id, addr, regs)
            if model.mdef is None:
                log.debug("%s: model %s at %s has no SunSpec definition; skipped", self, model_id, addr)
            problems.extend(model.problems)
            models.append(model)
            addr = model.end
        return DeviceMap(base, models, problems)

    # -- polling -------------------------------------------------------------------------------------
    async def read_models(self, models: Iterable[Model]) -> list[Model]:
        """Read the given (discovered) models again, in as few requests as possible, and decode them.

        Raises Garbage if a model is no longer where discovery found it (the map changed)."""
        wanted = sorted(models, key=lambda m: m.addr)
        regs: dict[int, int] = {}
        for start, count in plan_reads(wanted):
            values = await self.read(start, count)
            regs.update(zip(range(start, start + count), values, strict=True))
        out = []
        for m in wanted:
            data = [regs[a] for a in range(m.addr, m.end)]
            if data[0] != m.id or data[1] != m.length:
                raise Garbage(
                    f"{self}: the model map changed: expected model {m.id} (L={m.length}) at {m.addr}, "
                    f"found id {data[0]} L={data[1]}"
                )
            out.append(decode_model(m.id, m.addr, data))
        return out

    async def write_points(self, model: Model, changes: Mapping[str, Any]) -> dict[str, list[int]]:
        """Write scaled values to a model's fixed points, in the fewest requests that touch no read-only or
        unimplemented register. Spans are written in the order their first point appears in ``changes``.
        Returns what was written per point (registers), to compare with a read-back."""
        if model.mdef is None:
            raise ModelError(f"model {model.id} has no definition")
        mdef = model.mdef
        written: dict[str, list[int]] = {}
        by_offset: dict[int, tuple[str, list[int]]] = {}
        for name, value in changes.items():
            off, p = mdef.point(name)
            if not p.writable:
                raise ModelError(f"model {model.id} {name} is read-only")
            _, regs = encode_point(mdef, name, value, model.raw)
            written[name] = regs
            by_offset[off] = (name, regs)
        order = {name: i for i, name in enumerate(changes)}
        spans = _spans(model, by_offset)
        spans.sort(key=lambda s: min(order[n] for n in s[2]))
        for off, values, _names in spans:
            await self.write(model.addr + off, values)
        return written


def _spans(
    model: Model, by_offset: dict[int, tuple[str, list[int]]]
) -> list[tuple[int, list[int], list[str]]]:
    """Group point writes into contiguous spans; a gap may be bridged by writable, implemented points, which
    are written back with their current registers."""
    assert model.mdef is not None
    layout = sorted(
        (off, p) for name, (off, p) in fixed_points(model.mdef).items() if name not in ("ID", "L")
    )
    spans: list[tuple[int, list[int], list[str]]] = []
    cur: tuple[int, list[int], list[str]] | None = None
    pending: list[int] = []  # registers of bridgeable filler points since the last written point
    for off, p in layout:
        if off in by_offset:
            name, regs = by_offset[off]
            if cur is not None and off == cur[0] + len(cur[1]) + len(pending):
                cur[1].extend(pending)
                cur[1].extend(regs)
                cur[2].append(name)
            else:
                if cur is not None:
                    spans.append(cur)
                cur = (off, list(regs), [name])
            pending = []
        elif cur is not None:
            bridgeable = p.writable and model.raw.get(p.name) is not None and p.type != "pad"
            if bridgeable and len(cur[1]) + len(pending) + p.size <= MAX_REGS_PER_WRITE:
                pending.extend(model.regs[off : off + p.size])
            else:
                spans.append(cur)
                cur, pending = None, []
    if cur is not None:
        spans.append(cur)
    return spans


class _ReadAhead:
    """Registers fetched 125 at a time while walking the chain; when reading ahead runs past the end of the
    device's map (an exception response), the exact range is read instead."""

    def __init__(self, client: SunSpecClient) -> None:
        self.client = client
        self.regs: dict[int, int] = {}
        self.exact = False

    async def get(self, addr: int, count: int) -> list[int]:
        end = addr + count
        a = addr
        while a < end:
            if a in self.regs:
                a += 1
                continue
            need = min(end - a, MAX_REGS_PER_READ)
            ahead = min(MAX_REGS_PER_READ, ADDRESS_SPACE - a)
            if not self.exact and ahead > need:
                try:
                    values = await self.client.read(a, ahead)
                except DeviceRefused:
                    self.exact = True
                    values = await self.client.read(a, need)
            else:
                values = await self.client.read(a, need)
            self.regs.update(zip(range(a, a + len(values)), values, strict=True))
        return [self.regs[i] for i in range(addr, end)]


# -- read planning -------------------------------------------------------------------------------------


def point_starts(model: Model) -> list[int]:
    """Offsets (from the model's ID register) where a point starts: where a long model may be split."""
    out: list[int] = []
    if model.mdef is None or not model.values:
        return out

    def walk(g: GroupDef, values: Mapping[str, Any], off: int) -> int:
        for p in g.points:
            out.append(off)
            off += p.size
        for sg in g.groups:
            sv = values.get(sg.name)
            if sg.count is None:
                off = walk(sg, sv or {}, off)
            else:
                for item in sv or []:
                    off = walk(sg, item, off)
        return off

    walk(model.mdef.group, model.values, 0)
    return out


def plan_reads(models: list[Model], max_regs: int = MAX_REGS_PER_READ) -> list[tuple[int, int]]:
    """(address, count) requests covering the models (sorted by address): whole models are packed together,
    gaps between them read through, while a request stays within ``max_regs``."""
    plan: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    for m in models:
        size = m.end - m.addr
        if size <= max_regs:
            if cur_start is not None and m.end - cur_start <= max_regs:
                cur_end = max(cur_end, m.end)
                continue
            if cur_start is not None:
                plan.append((cur_start, cur_end - cur_start))
            cur_start, cur_end = m.addr, m.end
            continue
        if cur_start is not None:
            plan.append((cur_start, cur_end - cur_start))
        starts = sorted({m.addr + s for s in point_starts(m)} | {m.end})
        start = m.addr
        while m.end - start > max_regs:
            cut = max((s for s in starts if start < s <= start + max_regs), default=start + max_regs)
            plan.append((start, cut - start))
            start = cut
        cur_start, cur_end = start, m.end
    if cur_start is not None:
        plan.append((cur_start, cur_end - cur_start))
    return plan
