import json

from integrations.ocpp.bench import main


def test_bench_prints_one_object_per_version(capsys):
    assert main(["--json", "--n", "5", "--version", "1.6", "--version", "2.0.1"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in results] == ["1.6", "2.0.1"]
    for r in results:
        assert r["n"] == 5 and 0 < r["accepted_p50_ms"] <= r["p50_ms"] <= r["p99_ms"] < 1000
