"""`hems sim zigbee`: the simulated network with the integration, standalone."""

from __future__ import annotations

from integrations.zigbee.sim import main


def test_hems_sim_zigbee_runs_and_prints_what_happens(capsys):
    assert main(["--seconds", "3.5", "--speed", "600", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "gateway: radio up" in out
    assert "grid_power_w" in out
    assert "script: issue a load control event" in out
    assert "event 1001: Load_Control_Event_Received" in out
