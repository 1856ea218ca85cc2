"""`hems simulate`: the JSON contract and the rule table beating no control on the default tariff."""

import json

from hems.cli import main


def run(capsys, *args):
    assert main(["simulate", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_rules_cost_less_than_no_control_over_a_week(capsys):
    none = run(capsys, "--days", "7", "--strategy", "none")
    rules = run(capsys, "--days", "7", "--strategy", "rules")
    for result, name in ((none, "none"), (rules, "rules")):
        assert result["strategy"] == name
        assert result["days"] == 7
        for key in ("cost", "import_kwh", "export_kwh", "self_consumption_pct", "peak_import_kw"):
            assert isinstance(result[key], int | float), key
        assert 0 <= result["self_consumption_pct"] <= 100
    assert rules["cost"] < none["cost"]
    # same weather, same home: the PV produced is the same whatever the strategy
    assert abs(rules["pv_kwh"] - none["pv_kwh"]) < 0.01 * none["pv_kwh"] + 0.1


def test_same_seed_same_result(capsys):
    a = run(capsys, "--days", "2", "--strategy", "rules", "--seed", "5")
    b = run(capsys, "--days", "2", "--strategy", "rules", "--seed", "5")
    a.pop("runtime_s")
    b.pop("runtime_s")
    assert a == b


def test_bad_arguments_are_named(capsys):
    assert main(["simulate", "--days", "0"]) == 2
    assert "--days 0.0: must be > 0" in capsys.readouterr().err
    assert main(["simulate", "--step", "7"]) == 2
    assert "--step 7.0" in capsys.readouterr().err
