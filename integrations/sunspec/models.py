"""SunSpec information models: the SunSpec Alliance's own definitions (as shipped by pysunspec2), decoded
and encoded register by register.

Nothing here is a hand-written register map: every offset, type, scale factor and symbol comes from the
JSON model definitions in ``sunspec2/models/json``. What this module adds is a strict codec:

- "not implemented" values (0x8000, 0xFFFF, 0x80000000, NaN, an empty string, a zero accumulator, ...)
  decode to ``None``, never to 0, and so does a value whose scale factor is not implemented;
- anything that cannot be right (a scale factor outside -10..10, a model length that does not match its
  definition, a repeating-group count that does not fit) is reported as a problem, never raised past here.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import sunspec2
from sunspec2 import mdef as _mdef

MODELS_DIR = Path(sunspec2.__file__).resolve().parent / "models" / "json"

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF
MAX_REGS_PER_READ = 125  # Modbus read holding registers limit
SF_RANGE = (-10, 10)

# Register count per type, from the model definitions' own table (strings take the point's "size").
TYPE_LEN: dict[str, int | None] = {name: info["len"] for name, info in _mdef.point_type_info.items()}

_UNIMPL_INT = {
    "int16": -0x8000,
    "sunssf": -0x8000,
    "uint16": 0xFFFF,
    "count": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "acc16": 0,
    "int32": -0x80000000,
    "uint32": 0xFFFFFFFF,
    "enum32": 0xFFFFFFFF,
    "bitfield32": 0xFFFFFFFF,
    "acc32": 0,
    "ipaddr": 0,
    "int64": -0x8000000000000000,
    "uint64": 0xFFFFFFFFFFFFFFFF,
    "acc64": 0,
}
_SIGNED = {"int16", "sunssf", "int32", "int64"}
_INT_BITS = {1: 16, 2: 32, 4: 64}


class ModelError(ValueError):
    """A model definition is missing, or a value cannot be encoded into its point."""


# -- definitions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str
    type: str
    size: int  # registers
    sf: str | int | None = None
    access: str = "R"
    mandatory: bool = False
    units: str | None = None
    symbols: Mapping[int, str] = field(default_factory=dict)
    value: int | None = None  # fixed value (the model ID point)

    @property
    def writable(self) -> bool:
        return self.access == "RW"


@dataclass(frozen=True, slots=True)
class GroupDef:
    name: str
    points: tuple[PointDef, ...]
    groups: tuple[GroupDef, ...]
    count: int | str | None = None  # None: one instance; int: fixed (0 = fill the model); str: count point
    sync: bool = False

    @property
    def points_len(self) -> int:
        return sum(p.size for p in self.points)


@dataclass(frozen=True, slots=True, eq=False)  # one instance per model id (cached): hashed by identity
class ModelDef:
    id: int
    name: str
    label: str
    group: GroupDef

    @property
    def fixed_len(self) -> int:
        """Registers of the top-level points, header included."""
        return self.group.points_len

    def point(self, name: str) -> tuple[int, PointDef]:
        """Offset (from the model's ID register) and definition of a fixed-position point: a top-level point
        or one in a non-repeating group (``"PFWInj.PF"``)."""
        try:
            return fixed_points(self)[name]
        except KeyError:
            raise ModelError(f"model {self.id} has no fixed point {name!r}") from None


def _point_def(p: dict) -> PointDef:
    ptype = p["type"]
    if ptype not in TYPE_LEN:
        raise ModelError(f"unknown point type {ptype!r} for {p.get('name')!r}")
    size = TYPE_LEN[ptype] or int(p.get("size") or 0)
    if size <= 0:
        raise ModelError(f"point {p.get('name')!r} has no size")
    symbols = {int(s["value"]): str(s["name"]) for s in p.get("symbols", []) or []}
    value = p.get("value")
    return PointDef(
        name=p["name"],
        type=ptype,
        size=size,
        sf=p.get("sf"),
        access=p.get("access", "R"),
        mandatory=p.get("mandatory", "O") == "M",
        units=p.get("units"),
        symbols=symbols,
        value=int(value) if isinstance(value, int) else None,
    )


def _group_def(g: dict) -> GroupDef:
    count = g.get("count")
    if isinstance(count, str):
        try:
            count = int(count)
        except ValueError:
            pass
    return GroupDef(
        name=g["name"],
        points=tuple(_point_def(p) for p in g.get("points", []) or []),
        groups=tuple(_group_def(sg) for sg in g.get("groups", []) or []),
        count=count,
        sync=g.get("type") == "sync",
    )


@cache
def model_def(model_id: int) -> ModelDef | None:
    """The SunSpec Alliance's definition of a model, or None when pysunspec2 ships none for this id."""
    path = MODELS_DIR / f"model_{int(model_id)}.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    group = _group_def(raw["group"])
    return ModelDef(
        id=int(raw["id"]), name=group.name, label=raw["group"].get("label", group.name), group=group
    )


@cache
def fixed_points(mdef: ModelDef) -> dict[str, tuple[int, PointDef]]:
    out: dict[str, tuple[int, PointDef]] = {}

    def walk(g: GroupDef, offset: int, prefix: str) -> int | None:
        for p in g.points:
            out[prefix + p.name] = (offset, p)
            offset += p.size
        for sg in g.groups:
            if sg.count is not None:
                return None  # positions after a repeating group depend on the data
            nxt = walk(sg, offset, f"{prefix}{sg.name}.")
            if nxt is None:
                return None
            offset = nxt
        return offset

    walk(mdef.group, 0, "")
    return out


def _group_len(g: GroupDef) -> int | None:
    """Registers of one instance of a group, or None if it holds a repeating group itself."""
    n = g.points_len
    for sg in g.groups:
        if sg.count is not None:
            return None
        sub = _group_len(sg)
        if sub is None:
            return None
        n += sub
    return n


def expected_len(mdef: ModelDef) -> tuple[int, int]:
    """(fixed part, repeating unit) of a model's length L (header excluded). Unit 0: the model has one
    length; unit None: the length depends on count points in the data."""
    g = mdef.group
    fixed = g.points_len - 2
    unit = 0
    for sg in g.groups:
        glen = _group_len(sg)
        if sg.count is None:
            if glen is None:
                return fixed, -1
            fixed += glen
        elif sg.count == 0 and glen is not None:
            unit = glen
        elif isinstance(sg.count, int) and glen is not None:
            fixed += sg.count * glen
        else:
            return fixed, -1
    return fixed, unit


def check_length(mdef: ModelDef, length: int) -> str | None:
    """Why a model's announced length L cannot be right for its definition, or None when it can."""
    fixed, unit = expected_len(mdef)
    if unit == -1:
        return None if length >= fixed else f"L={length} but its fixed points alone need {fixed} registers"
    if unit == 0:
        trailing_pad = sum(p.size for p in _trailing_pads(mdef.group))
        if length == fixed or (trailing_pad and fixed - trailing_pad <= length < fixed):
            return None
        return f"L={length} but the definition has {fixed} registers"
    if length >= fixed and (length - fixed) % unit == 0:
        return None
    return f"L={length} but the definition needs {fixed} + a multiple of {unit} registers"


def _trailing_pads(g: GroupDef) -> list[PointDef]:
    if g.groups:
        return []
    pads = []
    for p in reversed(g.points):
        if p.type != "pad":
            break
        pads.append(p)
    return pads


# -- register codec ------------------------------------------------------------------------------------


def _regs_to_int(regs: list[int], signed: bool) -> int:
    v = 0
    for r in regs:
        v = (v << 16) | (r & 0xFFFF)
    if signed:
        bits = 16 * len(regs)
        if v >= 1 << (bits - 1):
            v -= 1 << bits
    return v


def _int_to_regs(v: int, size: int) -> list[int]:
    bits = 16 * size
    v &= (1 << bits) - 1
    return [(v >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]


def _regs_to_bytes(regs: list[int]) -> bytes:
    return b"".join(struct.pack(">H", r & 0xFFFF) for r in regs)


def _bytes_to_regs(data: bytes) -> list[int]:
    return [struct.unpack(">H", data[i : i + 2])[0] for i in range(0, len(data), 2)]


def decode_raw(p: PointDef, regs: list[int]) -> Any:
    """One point's registers to its raw value (unscaled); None when 'not implemented'."""
    t = p.type
    if t in _UNIMPL_INT:
        v = _regs_to_int(regs, t in _SIGNED)
        return None if v == _UNIMPL_INT[t] else v
    if t == "pad":
        return None
    if t in ("float32", "float64"):
        data = _regs_to_bytes(regs)
        f = struct.unpack(">f" if t == "float32" else ">d", data)[0]
        return None if math.isnan(f) else f
    if t == "string":
        data = _regs_to_bytes(regs)
        if not data or data[0] == 0:
            return None
        return data.split(b"\0", 1)[0].decode("utf-8", errors="replace").rstrip()
    if t == "ipv6addr":
        data = _regs_to_bytes(regs)
        return None if not any(data) else ":".join(data[i : i + 2].hex().upper() for i in range(0, 16, 2))
    if t == "eui48":
        data = _regs_to_bytes(regs)[2:8]
        return None if data == b"\xff" * 6 or not any(data) else ":".join(f"{b:02X}" for b in data)
    raise ModelError(f"cannot decode type {t!r}")


def encode_raw(p: PointDef, value: Any) -> list[int]:
    """A raw (unscaled) value to the point's registers; None encodes 'not implemented'."""
    t, size = p.type, p.size
    if t in _UNIMPL_INT or t == "pad":
        if value is None or t == "pad":
            return _int_to_regs(_UNIMPL_INT.get(t, 0), size)
        v = int(value)
        bits = _INT_BITS[size]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if t in _SIGNED else (0, (1 << bits) - 1)
        if not lo <= v <= hi:
            raise ModelError(f"{p.name} = {v} does not fit {t}")
        return _int_to_regs(v, size)
    if t in ("float32", "float64"):
        f = math.nan if value is None else float(value)
        return _bytes_to_regs(struct.pack(">f" if t == "float32" else ">d", f))
    if t == "string":
        data = b"" if value is None else str(value).encode("utf-8")
        if len(data) > 2 * size:
            raise ModelError(f"{p.name} = {value!r} is longer than {2 * size} bytes")
        return _bytes_to_regs(data.ljust(2 * size, b"\0"))
    if t == "ipv6addr":
        data = bytes(16) if value is None else bytes.fromhex(str(value).replace(":", ""))
        return _bytes_to_regs(data.ljust(16, b"\0")[:16])
    if t == "eui48":
        data = b"\xff" * 6 if value is None else bytes.fromhex(str(value).replace(":", ""))
        return _bytes_to_regs(b"\0\0" + data[:6])
    raise ModelError(f"cannot encode type {t!r}")


def scale(raw: int | float, sf: int) -> float:
    return float(raw) * 10**sf if sf >= 0 else raw / 10 ** (-sf)


def unscale(value: float, sf: int) -> int:
    return round(value / 10**sf) if sf >= 0 else round(value * 10 ** (-sf))


def sf_ok(sf: Any) -> bool:
    return isinstance(sf, int) and SF_RANGE[0] <= sf <= SF_RANGE[1]


# -- whole models --------------------------------------------------------------------------------------


@dataclass
class Model:
    """One model as read from a device: where it is, its registers and what they mean."""

    id: int
    addr: int  # Modbus address of the model's ID register
    length: int  # L: registers after the two-register header
    mdef: ModelDef | None
    regs: list[int] = field(default_factory=list)  # header included
    values: dict[str, Any] = field(default_factory=dict)  # scaled; groups are dicts, repeating groups lists
    raw: dict[str, Any] = field(default_factory=dict)  # unscaled top-level points (scale factors included)
    problems: list[str] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.addr + 2 + self.length

    @property
    def name(self) -> str:
        return self.mdef.name if self.mdef else f"model_{self.id}"

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def symbol(self, name: str) -> str | None:
        """The symbol name of an enum point's current value (None if unknown or not implemented)."""
        if self.mdef is None:
            return None
        try:
            _, p = self.mdef.point(name)
        except ModelError:
            return None
        raw = self.raw.get(name)
        return None if raw is None else p.symbols.get(int(raw))


def decode_model(model_id: int, addr: int, regs: list[int]) -> Model:
    """Decode a model from its registers (header included). Problems are collected, never raised."""
    length = regs[1] if len(regs) > 1 else 0
    where = f"model {model_id} at {addr}"
    try:
        mdef = model_def(model_id)
    except (ModelError, ValueError, KeyError) as exc:
        return Model(
            model_id, addr, length, None, list(regs), problems=[f"{where}: unusable definition: {exc}"]
        )
    model = Model(model_id, addr, length, mdef, list(regs))
    if mdef is None:
        return model
    if len(regs) != length + 2:
        model.problems.append(f"{where}: got {len(regs)} registers for L={length}")
        return model
    why = check_length(mdef, length)
    if why:
        model.problems.append(f"{where}: wrong length: {why}")
        return model
    try:
        values, raw, end = _decode_group(mdef.group, regs, 0, [], model.problems, where, top=True)
    except _Short:
        model.problems.append(f"{where}: wrong length: L={length} is too short for its repeating groups")
        return model
    if end != len(regs):
        model.problems.append(f"{where}: wrong length: L={length} but its points and groups take {end - 2}")
        return model
    model.values, model.raw = values, raw
    return model


class _Short(Exception):
    pass


def _decode_group(
    g: GroupDef,
    regs: list[int],
    off: int,
    scopes: list[dict[str, Any]],
    problems: list[str],
    where: str,
    top: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    raw: dict[str, Any] = {}
    for p in g.points:
        if off + p.size > len(regs):
            if top and p.type == "pad":
                off += p.size  # legacy model 1 (L=65) has no trailing pad
                continue
            raise _Short
        seg = regs[off : off + p.size]
        off += p.size
        if p.type == "pad":
            continue
        v = decode_raw(p, seg)
        if isinstance(v, float) and math.isinf(v):
            problems.append(f"{where}: {p.name} is infinite")
            v = None
        raw[p.name] = v
    if top and off > len(regs):
        off = len(regs)
    chain = [raw, *scopes]
    values: dict[str, Any] = {}
    for p in g.points:
        if p.type == "pad":
            continue
        v = raw.get(p.name)
        if p.type == "sunssf":
            if v is not None and not sf_ok(v):
                problems.append(f"{where}: scale factor {p.name} = {v} is outside -10..10")
                raw[p.name] = v = None
            values[p.name] = v
            continue
        if v is not None and p.sf is not None:
            sf = p.sf if isinstance(p.sf, int) else _lookup(chain, p.sf)
            v = None if sf is None or not sf_ok(sf) else scale(v, sf)
        values[p.name] = v
    for sg in g.groups:
        if sg.count is None:
            sv, _, off = _decode_group(sg, regs, off, chain, problems, where)
            values[sg.name] = sv
            continue
        count = _group_count(sg, regs, off, chain, problems, where)
        items = []
        for _ in range(count):
            sv, _, off = _decode_group(sg, regs, off, chain, problems, where)
            items.append(sv)
        values[sg.name] = items
    return values, raw, off


def _lookup(chain: list[dict[str, Any]], name: str) -> Any:
    for scope in chain:
        if name in scope:
            return scope[name]
    return None


def _group_count(
    sg: GroupDef, regs: list[int], off: int, chain: list[dict[str, Any]], problems: list[str], where: str
) -> int:
    if isinstance(sg.count, int) and sg.count > 0:
        return sg.count
    glen = _group_len(sg)
    if sg.count == 0:
        if not glen:
            return 0
        remaining = len(regs) - off
        return max(0, remaining // glen)
    n = _lookup(chain, str(sg.count))
    if n is None:
        problems.append(f"{where}: count point {sg.count} of group {sg.name} is not implemented")
        return 0
    if glen and off + n * glen > len(regs):
        raise _Short
    return int(n)


def encode_model(mdef: ModelDef, values: Mapping[str, Any]) -> list[int]:
    """A whole model's registers (header included) from scaled values keyed like ``Model.values``.

    Scale factors are taken from the values themselves (``values["W_SF"]``); a missing value is encoded as
    'not implemented'. The header's L is computed from the groups given.
    """
    regs = _encode_group(mdef.group, values, [], top=True)
    regs[0] = mdef.id
    regs[1] = len(regs) - 2
    return regs


def _encode_group(
    g: GroupDef, values: Mapping[str, Any], scopes: list[Mapping[str, Any]], top=False
) -> list[int]:
    chain = [values, *scopes]
    out: list[int] = []
    for p in g.points:
        v = values.get(p.name)
        if top and p.name in ("ID", "L"):
            out.extend([0] * p.size)
            continue
        if v is not None and p.sf is not None and p.type != "sunssf":
            sf = p.sf if isinstance(p.sf, int) else _lookup(chain, p.sf)
            if sf is None:
                raise ModelError(f"{g.name}.{p.name} has a value but its scale factor {p.sf} has none")
            v = unscale(float(v), int(sf))
        elif v is not None and p.type in _UNIMPL_INT:
            v = round(float(v))
        out.extend(encode_raw(p, v))
    for sg in g.groups:
        sv = values.get(sg.name)
        if sg.count is None:
            out.extend(_encode_group(sg, sv or {}, chain))
        else:
            for item in sv or []:
                out.extend(_encode_group(sg, item, chain))
    return out


def encode_point(mdef: ModelDef, name: str, value: Any, sfs: Mapping[str, Any]) -> tuple[int, list[int]]:
    """Offset and registers of one fixed-position point set to a scaled value; ``sfs`` holds the model's
    current scale factors (``Model.raw``). Raises ModelError if the value does not fit."""
    off, p = mdef.point(name)
    if value is not None and p.sf is not None and p.type != "sunssf":
        sf = p.sf if isinstance(p.sf, int) else sfs.get(p.sf)
        if not sf_ok(sf):
            raise ModelError(
                f"model {mdef.id} {name}: scale factor {p.sf} is not implemented or out of range"
            )
        value = unscale(float(value), int(sf))
    elif value is not None and p.type in _UNIMPL_INT:
        value = round(float(value))
    if value is not None and p.type in _UNIMPL_INT and value == _UNIMPL_INT[p.type]:
        raise ModelError(f"model {mdef.id} {name} = {value} is the 'not implemented' value")
    return off, encode_raw(p, value)
