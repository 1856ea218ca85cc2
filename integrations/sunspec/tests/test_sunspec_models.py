"""The codec on the SunSpec Alliance's model definitions: scale factors, 'not implemented', lengths, plans."""

from __future__ import annotations

import pytest

from integrations.sunspec.client import plan_reads
from integrations.sunspec.models import (
    PointDef,
    check_length,
    decode_model,
    decode_raw,
    encode_model,
    encode_point,
    model_def,
)
from integrations.sunspec.sim import MODEL_IDS, SunSpecSimInverter

from .conftest import PARAMS


def test_definitions_come_from_pysunspec2_json():
    m103 = model_def(103)
    assert m103 is not None and m103.label == "Inverter (Three Phase)"
    off, p = m103.point("W")
    assert (off, p.type, p.sf) == (14, "int16", "W_SF")  # offset 14 from the ID register: the spec's 40084
    assert model_def(714).group.groups[0].count == "NPrt"
    assert model_def(160).group.groups[0].count == 0  # fills the model
    assert model_def(704).point("PFWInj.PF")[0] == 59
    assert model_def(64999) is None


@pytest.mark.parametrize(
    ("ptype", "regs"),
    [
        ("int16", [0x8000]),
        ("uint16", [0xFFFF]),
        ("count", [0xFFFF]),
        ("acc16", [0]),
        ("enum16", [0xFFFF]),
        ("bitfield16", [0xFFFF]),
        ("sunssf", [0x8000]),
        ("int32", [0x8000, 0x0000]),
        ("uint32", [0xFFFF, 0xFFFF]),
        ("acc32", [0, 0]),
        ("enum32", [0xFFFF, 0xFFFF]),
        ("int64", [0x8000, 0, 0, 0]),
        ("uint64", [0xFFFF] * 4),
        ("acc64", [0] * 4),
        ("float32", [0x7FC0, 0x0000]),
        ("float64", [0x7FF8, 0, 0, 0]),
        ("string", [0] * 8),
        ("ipv6addr", [0] * 8),
    ],
)
def test_not_implemented_is_none_never_zero(ptype, regs):
    assert decode_raw(PointDef("X", ptype, len(regs)), regs) is None


def test_real_values_decode():
    assert decode_raw(PointDef("X", "int16", 1), [0xFFFE]) == -2
    assert decode_raw(PointDef("X", "int16", 1), [0]) == 0
    assert decode_raw(PointDef("X", "uint32", 2), [0x0001, 0x0002]) == 65538
    assert decode_raw(PointDef("X", "int32", 2), [0xFFFF, 0xFFFF]) == -1
    assert decode_raw(PointDef("X", "uint64", 4), [0, 0, 1, 0]) == 65536
    assert decode_raw(PointDef("X", "float32", 2), [0x4049, 0x0FDB]) == pytest.approx(3.14159, abs=1e-5)
    assert decode_raw(PointDef("X", "string", 4), [0x4845, 0x4D53, 0, 0]) == "HEMS"


def test_scale_factors_applied_and_unimplemented_scale_factor_gives_none():
    mdef = model_def(103)
    values = {
        "W": 2345.6,
        "W_SF": -1,
        "A": 9.87,
        "A_SF": -2,
        "Hz": 60.0,
        "Hz_SF": -2,
        "WH": 123456,
        "WH_SF": 0,
    }
    regs = encode_model(mdef, values)
    assert regs[:2] == [103, 50]
    assert regs[14:16] == [23456, 0xFFFF]  # W raw, then W_SF = -1 as an int16
    m = decode_model(103, 40000, regs)
    assert m.problems == []
    assert m.values["W"] == pytest.approx(2345.6)
    assert m.values["A"] == pytest.approx(9.87)
    assert m.values["WH"] == 123456
    assert m.values["PhVphA"] is None and m.values["VA"] is None  # not given: encoded 'not implemented'
    regs[15] = 0x8000  # W_SF not implemented: W cannot be known
    m = decode_model(103, 40000, regs)
    assert m.values["W"] is None and m.raw["W"] == 23456


def test_scale_factor_out_of_range_is_a_problem_and_drops_the_value():
    mdef = model_def(713)
    regs = encode_model(mdef, {"SoC": 55.5, "Pct_SF": -1, "WHRtg": 13500, "WH_SF": 0})
    regs[8] = 99  # Pct_SF
    m = decode_model(713, 40100, regs)
    assert m.values["SoC"] is None and m.values["WHRtg"] == 13500
    assert m.problems == ["model 713 at 40100: scale factor Pct_SF = 99 is outside -10..10"]


def test_wrong_length_is_a_problem_and_nothing_is_decoded():
    mdef = model_def(713)
    regs = encode_model(mdef, {"SoC": 55.5, "Pct_SF": -1})
    short = [713, 5, *regs[2:7]]
    m = decode_model(713, 40000, short)
    assert m.values == {} and "wrong length" in m.problems[0] and "L=5" in m.problems[0]
    assert check_length(model_def(1), 65) is None  # legacy common model without its pad
    assert check_length(model_def(1), 64) is not None
    assert check_length(model_def(160), 8 + 2 * 20) is None
    assert check_length(model_def(160), 8 + 2 * 20 + 3) is not None


def test_legacy_common_model_without_its_pad():
    regs = encode_model(model_def(1), {"Mn": "Old Inverters", "Md": "X1", "SN": "42", "DA": 3})
    legacy = [1, 65, *regs[2:-1]]
    m = decode_model(1, 40002, legacy)
    assert m.problems == [] and (m.values["Mn"], m.values["SN"], m.values["DA"]) == ("Old Inverters", "42", 3)


def test_repeating_groups_by_count_point_and_by_length():
    m714 = model_def(714)
    ports = [{"PrtTyp": 0, "ID": 1, "DCW": 3000.0}, {"PrtTyp": 1, "ID": 2, "DCW": -1500.0}]
    regs = encode_model(m714, {"NPrt": 2, "DCW_SF": 0, "Prt": ports})
    m = decode_model(714, 0, regs)
    assert m.problems == [] and [p["DCW"] for p in m.values["Prt"]] == [3000.0, -1500.0]
    bad = [*regs, 0, 0, 0]
    bad[1] += 3  # L no longer fits NPrt = 2 ports
    assert "wrong length" in decode_model(714, 0, bad).problems[0]


def test_encode_point_refuses_values_that_do_not_fit():
    mdef = model_def(123)
    sfs = {"WMaxLimPct_SF": -1}
    assert encode_point(mdef, "WMaxLimPct", 50.0, sfs) == (5, [500])
    with pytest.raises(ValueError):
        encode_point(mdef, "WMaxLimPct", 7000.0, sfs)  # 70000 does not fit uint16
    with pytest.raises(ValueError):
        encode_point(mdef, "WMaxLimPct", 50.0, {"WMaxLimPct_SF": None})


def test_every_simulated_model_round_trips_through_its_definition(home, clock):
    inv = SunSpecSimInverter(home, clock=clock)
    for mid in MODEL_IDS:
        m = inv.model(mid)
        assert m.problems == [], mid
        assert check_length(m.mdef, m.length) is None
        assert m.values, mid
    assert inv.model(1).values["Mn"] == "HEMS Simulator"
    assert inv.model(120).values["WRtg"] == PARAMS.pv.inverter_ac_w
    assert inv.model(124).values["WChaMax"] == PARAMS.battery.max_charge_w
    assert inv.model(713).values["WHRtg"] == PARAMS.battery.capacity_wh
    assert inv.model(802).values["Typ"] == 4  # lithium ion


def test_read_plan_packs_models_and_splits_only_long_ones(home, clock):
    inv = SunSpecSimInverter(home, clock=clock)
    models = [inv.model(mid) for mid in MODEL_IDS]
    plan = plan_reads(models)
    assert all(1 <= count <= 125 for _, count in plan)
    covered = {a for start, count in plan for a in range(start, start + count)}
    for m in models:
        assert set(range(m.addr, m.end)) <= covered
        if m.end - m.addr <= 125:  # a model that fits one request is read in one request
            assert any(start <= m.addr and m.end <= start + count for start, count in plan), m.id
    total = sum(m.end - m.addr for m in models)
    assert len(plan) == -(-total // 125) or len(plan) == -(-total // 125) + 1
