"""Per-step reasons: short, specific, and consistent with what the plan does."""

from __future__ import annotations

import numpy as np
import pytest

from hems.home import HomeParams
from hems.planner import plan
from hems.planner.reasons import MAX_REASONS
from hems.planner.scenarios import reference_inputs, simple_inputs


@pytest.fixture(scope="module")
def day():
    params = HomeParams()
    inputs = reference_inputs(96)
    return inputs, plan(params, inputs)


def test_one_short_tuple_per_step(day):
    _, p = day
    assert len(p.reasons) == p.steps
    for rs in p.reasons:
        assert 1 <= len(rs) <= MAX_REASONS
        assert len(set(rs)) == len(rs)
        assert all(isinstance(r, str) and 0 < len(r) <= 60 for r in rs)


def test_price_period_named_in_every_step(day):
    inputs, p = day
    for k, rs in enumerate(p.reasons):
        assert f"{inputs.period_names[k]} price" in rs


def test_dr_event_named_in_its_window(day):
    inputs, p = day
    w = inputs.dr_windows[0]
    for k in range(p.steps):
        inside = w.start_step <= k < w.end_step
        assert ("DR event evt-1: import cap 3.0 kW" in p.reasons[k]) == inside


def test_ev_charging_steps_name_the_departure_time(day):
    _, p = day
    charging = np.flatnonzero(p.ev_charge_w > 10)
    assert charging.size
    for k in charging:
        assert "charging EV for departure 07:30" in p.reasons[k]
    for k in np.flatnonzero(p.ev_charge_w <= 10):
        assert not any(r.startswith("charging EV") for r in p.reasons[k])


def test_precooling_before_the_dr_event_is_explained(day):
    inputs, p = day
    start = inputs.dr_windows[0].start_step
    assert any(r == "pre-cooling before DR event evt-1" for rs in p.reasons[:start] for r in rs)


def test_deferrable_start_is_explained(day):
    _, p = day
    for name, on in p.deferrable_on.items():
        first = int(np.argmax(on))
        assert f"{name}: cheapest slot in its window" in p.reasons[first]


def test_relative_price_labels_without_period_names():
    p = plan(HomeParams(), simple_inputs(6, import_price=[0.1, 0.1, 0.3, 0.3, 0.5, 0.5]))
    assert [rs[0] for rs in p.reasons] == ["low price"] * 2 + ["mid price"] * 2 + ["high price"] * 2
