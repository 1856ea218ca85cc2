"""`hems simulate` on a real home's data: measured load CSV, TMY3 weather, a tariff file with a demand charge."""

import json
from pathlib import Path

import pvlib
import pytest

from hems.cli import main

TMY3 = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
JAN1_UTC = 1767225600  # 2026-01-01 00:00 UTC


def run(capsys, *args):
    code = main(["simulate", "--json", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_measured_load_replaces_the_simulated_one(tmp_path, capsys):
    csv = tmp_path / "meter.csv"
    rows = ["timestamp,power_w"]
    for k in range(10 * 96):  # ten days at 15 min, starting 2025-12-31 UTC
        ts = JAN1_UTC - 86400 + k * 900
        rows.append(f"{ts},{600 + (k % 96) * 10}")
    csv.write_text("\n".join(rows) + "\n")
    r = run(capsys, "--days", "2", "--strategy", "none", "--load-csv", str(csv))
    # 2 local days (UTC-8): every 15-min slot's power is 600 + 10 * (UTC slot of day)
    expected_kwh = sum((600 + ((k + 32) % 96) * 10) * 0.25 for k in range(2 * 96)) / 1000
    assert r["base_load_kwh"] == pytest.approx(expected_kwh, rel=1e-6)


def test_load_csv_errors_name_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,power_w\n2026-01-01T00:00,500\n2026-01-01T00:15,lots\n")
    assert main(["simulate", "--days", "1", "--load-csv", str(bad)]) == 2
    assert f"{bad}:3: power 'lots' is not a number" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("2026-01-01T00:00,500\n2026-01-01T01:00,500\n")
    assert main(["simulate", "--days", "3", "--load-csv", str(short)]) == 2
    assert "the simulation needs" in capsys.readouterr().err


def test_tmy3_weather_drives_pv(capsys):
    synthetic = run(capsys, "--days", "7", "--strategy", "none", "--start", "2026-06-01")
    tmy = run(capsys, "--days", "7", "--strategy", "none", "--start", "2026-06-01", "--weather", str(TMY3))
    assert tmy["pv_kwh"] != synthetic["pv_kwh"]
    assert 7 * 8 * 2.0 < tmy["pv_kwh"] < 7 * 8 * 8.0  # 2-8 kWh per kWp per June day


def test_tariff_file_with_demand_charge(tmp_path, capsys):
    f = tmp_path / "tariff.toml"
    f.write_text(
        "export_price_per_kwh = 0.05\ndemand_charge_per_kw = 10.0\n"
        '[[periods]]\nname = "flat"\nstart = "00:00"\nend = "24:00"\nimport_price_per_kwh = 0.30\n'
    )
    r = run(capsys, "--days", "7", "--strategy", "rules", "--tariff", str(f))
    assert r["demand_charge"] == pytest.approx(10.0 * r["peak_import_kw"], abs=0.01)  # one month
    assert r["cost"] == pytest.approx(r["import_cost"] - r["export_credit"] + r["demand_charge"], abs=0.02)
    assert r["import_cost"] == pytest.approx(0.30 * r["import_kwh"], abs=0.05)
    seasonal = Path(__file__).resolve().parents[1] / "examples" / "tariff-tou-seasonal.toml"
    run(capsys, "--days", "2", "--strategy", "rules", "--tariff", str(seasonal))
    assert main(["simulate", "--tariff", str(tmp_path / "missing.toml")]) == 2
    assert "--tariff" in capsys.readouterr().err


def test_dr_events_are_honoured_and_compliance_reported(capsys):
    events = ["--dr-event", "2026-07-07T17:00,2,1.0", "--dr-event", "2026-07-08T23:00,1,2"]
    none = run(capsys, "--days", "3", "--start", "2026-07-06", "--strategy", "none", *events)
    planner = run(capsys, "--days", "3", "--start", "2026-07-06", "--strategy", "planner", *events)
    assert none["dr_intervals"] == planner["dr_intervals"] == 12  # 3 h of 15-min intervals
    assert planner["dr_compliance_pct"] == 100.0
    assert none["dr_compliance_pct"] < 100.0  # the EV charges into the 23:00 event without a gateway
    assert main(["simulate", "--dr-event", "tomorrow,2,1"]) == 2
    assert "--dr-event 'tomorrow,2,1'" in capsys.readouterr().err
