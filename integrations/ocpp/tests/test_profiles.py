"""The pure parts: profile composition, the profiles the CSMS sends, meter value parsing, configuration."""

from __future__ import annotations

import pytest

from hems.bus import Bus
from hems.clock import ManualClock
from hems.config import ConfigError
from integrations.ocpp import profiles as pf
from integrations.ocpp.config import parse_settings
from integrations.ocpp.csms import parse_basic_auth, parse_meter_values
from integrations.ocpp.rpc import error_code

from .conftest import make_context

T0 = 1_780_000_000.0
V, PH = 240.0, 1


def prof(pid, purpose, stack, limit, *, unit="W", connector=0, **kw) -> pf.Profile:
    return pf.Profile(pid, connector, purpose, stack, unit=unit, periods=[(0.0, limit, None)], **kw)


def limit(profiles, ts=T0, tx="t1", tx_start=T0 - 100):
    return pf.composite_limit_w(profiles, ts, 1, transaction_id=tx, tx_start=tx_start, voltage_v=V, phases=PH)


def test_composition_rules():
    safe = prof(1, pf.TX_DEFAULT, 0, 3680.0, kind="Relative")
    plan = prof(2, pf.TX_DEFAULT, 1, 9000.0, kind="Relative", valid_to=T0 + 60)
    assert limit([]) is None  # nothing limits: the charger's own maximum
    assert limit([safe]) == 3680.0
    assert limit([safe, plan]) == 9000.0  # higher stack level wins
    assert limit([safe, plan], ts=T0 + 60) == 3680.0  # expired: back to the safe default
    tx = prof(3, pf.TX, 1, 2000.0, kind="Relative", connector=1, transaction_id="t1")
    assert limit([safe, plan, tx]) == 2000.0  # the transaction's own profile beats the default, even if lower
    assert limit([safe, plan, tx], tx="t2") == 9000.0  # not this transaction's
    assert limit([safe, plan, tx], tx=None) == 9000.0  # no transaction: TxProfile does not apply
    own = prof(4, pf.TX_DEFAULT, 0, 5000.0, kind="Relative", connector=1)
    assert limit([safe, own]) == 5000.0  # the connector's own default beats connector 0's
    cap = prof(5, "ChargePointMaxProfile", 0, 16.0, unit="A")
    assert limit([safe, plan, cap]) == 16.0 * 240.0  # the charge point's maximum caps everything
    assert limit([cap]) == 3840.0


def test_absolute_recurring_and_duration():
    absolute = pf.Profile(
        1,
        0,
        pf.TX_DEFAULT,
        0,
        kind="Absolute",
        unit="A",
        start_schedule=T0,
        periods=[(0.0, 32.0, None), (3600.0, 10.0, 3), (7200.0, 0.0, None)],
        duration_s=10800.0,
    )
    assert limit([absolute], ts=T0 - 1) is None  # not started
    assert limit([absolute], ts=T0 + 10) == 32.0 * 240
    assert limit([absolute], ts=T0 + 3600) == 10.0 * 240 * 3  # numberPhases of the period
    assert limit([absolute], ts=T0 + 7300) == 0.0
    assert limit([absolute], ts=T0 + 10800) is None  # duration over
    daily = pf.Profile(
        2,
        0,
        pf.TX_DEFAULT,
        0,
        kind="Recurring",
        recurrency="Daily",
        unit="W",
        start_schedule=T0,
        periods=[(0.0, 1000.0, None), (43200.0, 2000.0, None)],
    )
    assert limit([daily], ts=T0 + 3 * 86400 + 100) == 1000.0
    assert limit([daily], ts=T0 + 3 * 86400 + 50000) == 2000.0


def test_composite_schedule_merges_and_rounds_down():
    safe = prof(1, pf.TX_DEFAULT, 0, 3680.0, kind="Relative")
    plan = prof(2, pf.TX_DEFAULT, 1, 5000.0, kind="Relative", valid_to=T0 + 30)
    args = dict(transaction_id=None, tx_start=None, voltage_v=V, phases=PH, max_w=11520.0)
    assert pf.composite_schedule([safe, plan], T0, 60, 1, unit="W", **args) == [(0, 5000.0), (30, 3680.0)]
    assert pf.composite_schedule([safe, plan], T0, 60, 1, unit="A", **args) == [(0, 20.8), (30, 15.3)]
    assert pf.composite_schedule([], T0, 60, 1, unit="A", **args) == [(0, 48.0)]


def test_store_and_clear():
    a = prof(1, pf.TX_DEFAULT, 0, 1.0)
    b = prof(2, pf.TX_DEFAULT, 1, 2.0)
    same_slot = prof(7, pf.TX_DEFAULT, 1, 3.0)  # same purpose, stack level and connector: replaces b
    stored = pf.store_profile(pf.store_profile(pf.store_profile([], a), b), same_slot)
    assert [p.id for p in stored] == [1, 7]
    kept, n = pf.clear_profiles(stored, profile_id=7)
    assert [p.id for p in kept] == [1] and n == 1
    kept, n = pf.clear_profiles(stored, purpose=pf.TX)
    assert n == 0
    kept, n = pf.clear_profiles(stored)
    assert kept == [] and n == 2


def test_profiles_the_csms_sends():
    p16 = pf.profile_v16(903, pf.TX, 1, 20.8, "A", valid_to=T0, transaction_id=42, phases=1)
    assert p16 == {
        "chargingProfileId": 903,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": 42,
        "validTo": "2026-05-28T20:26:40.000Z",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20.8, "numberPhases": 1}],
        },
    }
    p2 = pf.profile_v2(902, pf.TX_DEFAULT, 1, 5000.0, "W", valid_to=T0, max_offline_s=900)
    assert p2["chargingSchedule"] == [
        {"id": 902, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000.0}]}
    ]
    assert p2["maxOfflineDuration"] == 900 and p2["invalidAfterOfflineDuration"] is True
    assert pf.watts_to_rate(3680, "A", 240, 1) == 15.3 and pf.watts_to_rate(7200, "A", 240, 1) == 30.0
    assert pf.watts_to_rate(11040, "A", 230, 3) == 16.0
    assert pf.parse_iso(pf.iso(T0 + 0.25)) == T0 + 0.25
    assert pf.parse_iso("2026-05-28T20:26:40+02:00") == T0 - 7200 and pf.parse_iso("nonsense") is None


def test_meter_values_in_every_shape():
    v16 = [
        {
            "timestamp": "2026-05-28T20:26:40Z",
            "sampled_value": [
                {
                    "value": "12.345",
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "kWh",
                    "context": "Transaction.Begin",
                },
                {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "10.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "10.5", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                {"value": "230", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                {"value": "55", "measurand": "SoC", "location": "EV", "unit": "Percent"},
                {"value": "garbage", "measurand": "Power.Active.Import"},
                {"value": "ABCDEF", "format": "SignedData"},
            ],
        }
    ]
    (s,) = parse_meter_values(v16)
    assert (s.ts, s.energy_wh, s.begin_wh, s.power_w, s.soc_pct) == (T0, 12345.0, 12345.0, 7200.0, 55.0)
    assert s.current_a == {"l1": 10.0, "l2": 10.5}
    v2 = [
        {
            "timestamp": "2026-05-28T20:26:40.000Z",
            "sampled_value": [
                {
                    "value": 1.5,
                    "measurand": "Energy.Active.Import.Register",
                    "unit_of_measure": {"unit": "Wh", "multiplier": 3},
                    "context": "Transaction.End",
                },
                {"value": 1000, "measurand": "Power.Active.Import", "phase": "L1"},
                {"value": 1100, "measurand": "Power.Active.Import", "phase": "L2-N"},
                {"value": 16, "measurand": "Current.Import"},
            ],
        },
        "not a dict",
    ]
    (s,) = parse_meter_values(v2)
    assert (s.energy_wh, s.end_wh, s.power_w, s.current_a) == (1500.0, 1500.0, 2100.0, {"total": 16.0})
    assert parse_meter_values(None) == []


def test_error_code_spelling_per_version_and_basic_auth():
    assert error_code("FormatViolation", "1.6") == "FormationViolation"
    assert error_code("FormationViolation", "2.0.1") == "FormatViolation"
    assert error_code("OccurrenceConstraintViolation", "2.0.1") == "OccurenceConstraintViolation"
    assert error_code("OccurenceConstraintViolation", "2.1") == "OccurrenceConstraintViolation"
    assert error_code("MessageTypeNotSupported", "1.6") == "ProtocolError"
    assert parse_basic_auth("Basic Z2FyYWdlOnNlY3JldDpwYXJ0") == ("garage", "secret:part")
    assert parse_basic_auth("Bearer abc") is None and parse_basic_auth("Basic ***") is None


def settings(section: dict, devices: list[dict]):
    return parse_settings(make_context(Bus(ManualClock()), section, devices))


def test_config_defaults_and_problems(tmp_path):
    s = settings({}, [{"type": "ocpp", "id": "garage", "password": "p" * 16}])
    assert (s.host, s.port, s.security_profile, s.safe_limit_w, s.profile_validity_s) == (
        "127.0.0.1",
        9000,
        1,
        3680.0,
        900.0,
    )
    charger = s.chargers["garage"]
    assert (charger.max_power_w, charger.voltage_v, charger.phases, charger.rate_unit) == (
        11520.0,
        240.0,
        1,
        "auto",
    )
    with pytest.raises(ConfigError) as err:
        settings(
            {"port": 70000, "security_profile": 3, "safe_limit_w": "lots", "prot": 1},
            [
                {"type": "ocpp", "id": "bad id", "password": "p" * 16},
                {"type": "ocpp", "id": "garage", "password": "short", "phases": 4, "colour": "red"},
                {"type": "ocpp", "id": "garage", "password": "p" * 16},
            ],
        )
    text = str(err.value)
    for needle in (
        "integrations.ocpp.port = 70000: must be a TCP port",
        "integrations.ocpp.security_profile = 3: must be 0 (no auth), 1 (basic auth) or 2",
        "integrations.ocpp.safe_limit_w = 'lots'",
        "unknown key 'integrations.ocpp.prot'",
        "id = 'bad id'",
        "devices (type = \"ocpp\", id = 'garage').password: must be 16 to 40 characters",
        "phases = 4: must be 1, 2 or 3",
        "unknown key 'colour'",
        "charge point 'garage' is enrolled twice",
    ):
        assert needle in text, needle
    with pytest.raises(ConfigError, match="tls_cert is missing: security_profile = 2 needs a PEM file"):
        settings({"security_profile": 2}, [])
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the certificate and key"):
        settings({"security_profile": 2, "tls_cert": str(bogus), "tls_key": str(bogus)}, [])
    assert (
        settings({"security_profile": 0}, [{"type": "ocpp", "id": "open"}]).chargers["open"].password is None
    )
