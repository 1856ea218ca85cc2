"""Pure parts: identity, the hardened parser, resources, event rules, configuration."""

from __future__ import annotations

import pytest

from hems.config import ConfigError
from integrations.sep2 import events as rules
from integrations.sep2 import identity
from integrations.sep2 import resources as r
from integrations.sep2.config import parse

NS = r.NS


def test_lfdi_and_sfdi(pki):
    with open(pki.device_cert, "rb") as f:
        pem = f.read()
    lfdi = identity.lfdi(pem)
    assert len(lfdi) == 40 and int(lfdi, 16) >= 0
    assert lfdi == pki.device_lfdi
    sfdi = identity.sfdi(pem)
    assert identity.sfdi_valid(sfdi)
    assert str(sfdi)[:-1] == str(int(lfdi[:9], 16))
    assert identity.check_digit("1234") == 0  # 1+2+3+4 = 10
    assert identity.sfdi_from_lfdi("3E4F45AB31EDFE5B67E343E5E4562E31984E23E5") == int(
        str(int("3E4F45AB3", 16)) + str(identity.check_digit(str(int("3E4F45AB3", 16))))
    )


@pytest.mark.parametrize(
    "doc, why",
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b'<Time xmlns="urn:ieee:std:2030.5:ns"><currentTime>&lol2;</currentTime></Time>',
            "DTD",
        ),
        (
            b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Time xmlns="urn:ieee:std:2030.5:ns">'
            b"<currentTime>&xxe;</currentTime></Time>",
            "DTD",
        ),
        (b"<Time>" + b"x" * (r.MAX_DOCUMENT_BYTES + 1) + b"</Time>", "larger"),
        (b"", "empty"),
        (b"\xff\xfe<Time/>", "UTF-8"),
        (b'<?xml version="1.0" encoding="UTF-16"?><Time/>', "encoding"),
        (b"<Time><currentTime>1</Time>", "well-formed"),
    ],
)
def test_hostile_documents_refused(doc, why):
    with pytest.raises(r.RefusedXML, match=why):
        r.parse_xml(doc)


def test_wrong_resource_refused():
    with pytest.raises(r.ResourceError, match=r"expected a 2030\.5 Time"):
        r.parse_time(r.parse_xml(b'<Time xmlns="urn:other"><currentTime>1</currentTime></Time>'))
    with pytest.raises(r.ResourceError, match="not an integer"):
        r.parse_time(r.parse_xml(f'<Time xmlns="{NS}"><currentTime>soon</currentTime></Time>'))


DERC = f"""<DERControlList xmlns="{NS}" xmlns:csipaus="https://csipaus.org/ns" href="/derp/1/derc" all="1"
 results="1" pollRate="30">
 <DERControl href="/derp/1/derc/1" replyTo="/rsps/1/rsp" responseRequired="03">
  <mRID>0A1B2C3D4E5F60718293A4B5C6D7E8F9</mRID><description>export</description>
  <creationTime>1700000000</creationTime>
  <EventStatus><currentStatus>0</currentStatus><dateTime>1700000000</dateTime>
   <potentiallySuperseded>false</potentiallySuperseded></EventStatus>
  <interval><duration>600</duration><start>1700000100</start></interval>
  <randomizeStart>-60</randomizeStart>
  <DERControlBase><opModConnect>true</opModConnect>
   <csipaus:opModExpLimW><multiplier>2</multiplier><value>15</value></csipaus:opModExpLimW>
   <opModImpLimW><multiplier>0</multiplier><value>4000</value></opModImpLimW>
   <opModMaxLimW>5000</opModMaxLimW></DERControlBase>
 </DERControl>
</DERControlList>"""


def test_der_control_list_parsed():
    lst = r.parse_der_control_list(r.parse_xml(DERC))
    assert lst.poll_rate_s == 30 and lst.complete
    (ev,) = lst.items
    assert ev.mrid == "0A1B2C3D4E5F60718293A4B5C6D7E8F9"
    assert ev.base.op_mod_exp_lim_w == 1500.0  # 15 x 10^2
    assert ev.base.op_mod_imp_lim_w == 4000.0
    assert ev.base.op_mod_max_lim_pct == 50.0
    assert ev.base.op_mod_connect is True
    assert ev.reply_to == "/rsps/1/rsp" and ev.response_required == 3
    dre = rules.to_dr_event(rules.Tracked(ev, 10, "/derp/1"), offset_s=100.0)
    assert dre.start_ts == 1700000100 - 100 - 60 and dre.randomization_s == 60
    assert dre.import_cap_w == 4000.0 and dre.source_ref["export_limit_w"] == 1500.0
    assert dre.priority == 11 and dre.event_id == "derc-" + ev.mrid


def _ev(mrid, start, duration, created, **modes):
    base = r.DERControlBase(**modes)
    status = r.EventStatus(0, None, False)
    return r.Event("DERControl", "", mrid, None, created, status, start, duration, 0, 0, None, 0, base)


def test_supersession_by_primacy_then_creation_time():
    a = rules.Tracked(_ev("A", 0, 100, 1, op_mod_exp_lim_w=1000.0), 10, "/p1")
    b = rules.Tracked(_ev("B", 50, 100, 2, op_mod_exp_lim_w=2000.0), 10, "/p1")  # newer, same primacy
    c = rules.Tracked(_ev("C", 60, 10, 0, op_mod_exp_lim_w=0.0), 1, "/p0")  # older, higher priority program
    d = rules.Tracked(_ev("D", 0, 100, 0, op_mod_imp_lim_w=3000.0), 10, "/p1")  # other mode: no conflict
    e = rules.Tracked(_ev("E", 200, 10, 0, op_mod_exp_lim_w=0.0), 1, "/p0")  # no overlap
    beaten = rules.superseded([a, b, c, d, e])
    assert beaten["A"] in ("B", "C") and beaten["B"] == "C"
    assert "C" not in beaten and "D" not in beaten and "E" not in beaten
    merged = rules.merge([a, c, d], r.DERControlBase(op_mod_exp_lim_w=5000.0, op_mod_gen_lim_w=7000.0))
    assert merged.op_mod_exp_lim_w == 0.0 and merged.op_mod_imp_lim_w == 3000.0
    assert merged.op_mod_gen_lim_w == 7000.0
    assert rules.pv_limit_w(merged, 10000) == 0.0
    assert rules.pv_limit_w(r.DERControlBase(op_mod_max_lim_pct=30.0), 10000) == 3000.0
    assert rules.pv_limit_w(r.DERControlBase(op_mod_energize=False), 10000) == 0.0
    assert rules.pv_limit_w(r.DERControlBase(), 10000) is None
    assert rules.battery_setpoint_w(r.DERControlBase(op_mod_target_w=2000.0), 1) == -2000.0


def test_response_required_bits():
    assert rules.response_wanted(0x01, rules.RECEIVED) and not rules.response_wanted(0x01, rules.STARTED)
    assert rules.response_wanted(0x02, rules.COMPLETED) and not rules.response_wanted(0x00, rules.RECEIVED)


def test_active_power_round_trip():
    for w in (0.0, 1234.0, 45000.0, -20000.0):
        d = r.active_power(w)
        assert abs(d["value"]) <= 32767
        assert abs(d["value"] * 10 ** d["multiplier"] - w) <= 10 ** d["multiplier"]


def test_config_errors_name_keys(pki, tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(
            {
                "server_url": "http://x/dcap",
                "cert_file": "/nope",
                "pin": "abc",
                "poll_default_s": -1,
                "bogus": 1,
            }
        )
    text = str(err.value)
    for key in ("server_url", "cert_file", "key_file", "ca_file", "pin", "poll_default_s", "bogus"):
        assert f"sep2.{key}" in text
    cfg = parse(
        {
            "server_url": "https://127.0.0.1:1/dcap",
            "cert_file": pki.device_cert,
            "key_file": pki.device_key,
            "ca_file": pki.ca_file,
            "pin": "111115",
        }
    )
    assert cfg.pin == 111115 and cfg.poll_default_s == 900.0


CURVE = f"""<DERCurve xmlns="{NS}" href="/derp/1/dc/4">
 <mRID>C0000000000000000000000000000004</mRID><description>VV</description><creationTime>1700000000</creationTime>
 <CurveData><xvalue>92</xvalue><yvalue>44</yvalue></CurveData>
 <CurveData><xvalue>108</xvalue><yvalue>-44</yvalue><excitation>false</excitation></CurveData>
 <curveType>11</curveType><rampDecTms>500</rampDecTms><rampIncTms>600</rampIncTms><rampPT1Tms>1000</rampPT1Tms>
 <vRef>10000</vRef><xMultiplier>0</xMultiplier><yMultiplier>-1</yMultiplier><yRefType>3</yRefType>
</DERCurve>"""


def test_der_curve_parsed_with_multipliers():
    c = r.parse_der_curve(r.parse_xml(CURVE))
    assert c.mode == "opModVoltVar" and c.curve_type == 11
    assert [(p.x, p.y) for p in c.points] == [(92.0, 4.4), (108.0, -4.4)]
    assert c.points[1].excitation is False and c.v_ref_pct == 100.0
    assert (c.ramp_dec_tms, c.ramp_inc_tms, c.ramp_pt1_tms) == (500, 600, 1000)
    no_points = CURVE.split("<CurveData>")[0] + "<curveType>11</curveType></DERCurve>"
    with pytest.raises(r.ResourceError, match="no CurveData"):
        r.parse_der_curve(r.parse_xml(no_points))
    base = r.parse_der_control_base(
        r.parse_xml(f'<DERControlBase xmlns="{NS}"><opModVoltVar href="/derp/1/dc/4"/></DERControlBase>')
    )
    assert base.curve_links() == {"opModVoltVar": "/derp/1/dc/4"} and base.modes() == {"op_mod_volt_var"}


TTI = f"""<TimeTariffIntervalList xmlns="{NS}" href="/tti" all="1" results="1">
 <TimeTariffInterval href="/tti/1"><mRID>A1000000000000000000000000000001</mRID>
  <creationTime>1700000000</creationTime>
  <EventStatus><currentStatus>2</currentStatus><dateTime>1700000000</dateTime>
   <potentiallySuperseded>false</potentiallySuperseded></EventStatus>
  <interval><duration>1800</duration><start>1700003600</start></interval>
  <ConsumptionTariffIntervalListLink href="/tti/1/cti" all="1"/><touTier>3</touTier>
 </TimeTariffInterval>
</TimeTariffIntervalList>"""


def test_tariff_resources_and_price_units():
    (tti,) = r.parse_time_tariff_interval_list(r.parse_xml(TTI)).items
    assert tti.event_status.cancelled and tti.end == 1700005400 and tti.tou_tier == 3
    tp = r.parse_tariff_profile(
        r.parse_xml(
            f'<TariffProfile xmlns="{NS}" href="/tp/0"><currency>36</currency>'
            f"<pricePowerOfTenMultiplier>-5</pricePowerOfTenMultiplier><primacy>2</primacy>"
            f'<RateComponentListLink href="/tp/0/rc"/></TariffProfile>'
        )
    )
    assert tp.currency == 36 and tp.rate_component_list_link == "/tp/0/rc"
    per_kwh = r.ReadingType("/rt", 72, 3)
    per_wh = r.ReadingType("/rt", 72, 0)
    assert r.price_per_kwh(31000, tp, per_kwh) == 0.31  # 31000 x 10^-5 AUD per kWh
    assert r.price_per_kwh(31, tp, per_wh) == 0.31  # 31 x 10^-5 AUD per Wh = 0.31 per kWh
    assert r.price_per_kwh(31000, tp) == 0.31  # no ReadingType: per kWh
    cti = r.parse_consumption_tariff_interval_list(
        r.parse_xml(
            f'<ConsumptionTariffIntervalList xmlns="{NS}" all="1" results="1"><ConsumptionTariffInterval>'
            "<consumptionBlock>1</consumptionBlock><price>-120</price></ConsumptionTariffInterval>"
            "</ConsumptionTariffIntervalList>"
        )
    )
    assert cti.items[0].price == -120 and cti.items[0].consumption_block == 1
