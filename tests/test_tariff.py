"""Tariff lookups at period edges, across DST, with seasons and dynamic prices; validation; TOML I/O."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from hems.tariff import DYNAMIC_PERIOD, Period, PriceSeries, Tariff, TariffError, TariffPoint

LA = ZoneInfo("America/Los_Angeles")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tariff-tou-seasonal.toml"


def local(s: str, tz: ZoneInfo = LA, fold: int = 0) -> float:
    """POSIX time of a local wall-clock time 'YYYY-MM-DD HH:MM[:SS[.ffffff]]'."""
    return datetime.fromisoformat(s).replace(tzinfo=tz, fold=fold).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def check_prices_agree_with_at(tariff: Tariff, start_ts: float, n_steps: int, step_s: float) -> None:
    imp, exp, names = tariff.prices(start_ts, n_steps, step_s)
    assert imp.shape == exp.shape == (n_steps,) and len(names) == n_steps
    for k in range(n_steps):
        p = tariff.at(start_ts + k * step_s)
        assert (names[k], imp[k], exp[k]) == (p.period, p.import_price_per_kwh, p.export_price_per_kwh), (
            f"step {k} at {datetime.fromtimestamp(start_ts + k * step_s, tariff._tz)}"
        )


# A tariff for DST checks: every day, edges inside and around the 01:00-03:00 hours that DST changes touch.
DST_PERIODS = [
    Period("a", 0.10, None, "all", "00:00", "01:30"),
    Period("b", 0.20, None, "all", "01:30", "02:30"),
    Period("c", 0.30, None, "all", "02:30", "03:00"),
    Period("d", 0.40, None, "all", "03:00", "24:00"),
]


@pytest.fixture
def default() -> Tariff:
    return Tariff.default()


@pytest.fixture
def dst_tariff() -> Tariff:
    return Tariff(DST_PERIODS, timezone="America/Los_Angeles", export_price_per_kwh=0.05)


@pytest.fixture
def seasonal() -> Tariff:
    return Tariff.load(EXAMPLE)


# ------------------------------------------------------------------------------------------ default TOU

# 2026-01-14 is a Wednesday, 2026-01-16 a Friday, 2026-01-18 a Sunday (all PST, UTC-8).
DEFAULT_EDGES = [
    ("2026-01-14 00:00:00", "off_peak", 0.14),
    ("2026-01-14 05:59:00", "off_peak", 0.14),
    ("2026-01-14 05:59:59", "off_peak", 0.14),
    ("2026-01-14 06:00:00", "shoulder", 0.24),
    ("2026-01-14 06:00:01", "shoulder", 0.24),
    ("2026-01-14 12:00:00", "shoulder", 0.24),
    ("2026-01-14 15:59:00", "shoulder", 0.24),
    ("2026-01-14 15:59:59", "shoulder", 0.24),
    ("2026-01-14 15:59:59.999", "shoulder", 0.24),
    ("2026-01-14 16:00:00", "peak", 0.46),
    ("2026-01-14 18:30:00", "peak", 0.46),
    ("2026-01-14 20:59:59", "peak", 0.46),
    ("2026-01-14 21:00:00", "shoulder", 0.24),
    ("2026-01-14 22:59:00", "shoulder", 0.24),
    ("2026-01-14 22:59:59", "shoulder", 0.24),
    ("2026-01-14 23:00:00", "off_peak", 0.14),
    ("2026-01-14 23:59:59", "off_peak", 0.14),
    ("2026-01-15 00:00:00", "off_peak", 0.14),  # midnight wrap, weekday to weekday
    ("2026-01-16 23:59:59", "off_peak", 0.14),  # Friday night ...
    ("2026-01-17 00:00:00", "super_off_peak", 0.11),  # ... Saturday starts super off-peak
    ("2026-01-17 05:59:59", "super_off_peak", 0.11),
    ("2026-01-17 06:00:00", "super_off_peak", 0.11),
    ("2026-01-17 16:00:00", "super_off_peak", 0.11),
    ("2026-01-18 23:59:59", "super_off_peak", 0.11),  # Sunday night ...
    ("2026-01-19 00:00:00", "off_peak", 0.14),  # ... Monday 00:00 is weekday off-peak
    ("2026-01-19 05:59:59", "off_peak", 0.14),
    ("2026-01-19 06:00:00", "shoulder", 0.24),
]


@pytest.mark.parametrize(("when", "period", "price"), DEFAULT_EDGES)
def test_default_edges(default: Tariff, when: str, period: str, price: float) -> None:
    ts = local(when)
    assert default.at(ts) == TariffPoint(period, price, 0.06)
    imp, exp, names = default.prices(ts, 1, 300)
    assert (names[0], imp[0], exp[0]) == (period, price, 0.06)


def test_default_edges_in_utc(default: Tariff) -> None:
    # PST = UTC-8 in January: 16:00 local is 00:00 UTC the next day
    assert default.at(utc(2026, 1, 14, 23, 59, 59)).period == "shoulder"
    assert default.at(utc(2026, 1, 15, 0, 0, 0)).period == "peak"
    assert default.at(utc(2026, 1, 15, 5, 0, 0)).period == "shoulder"  # 21:00 PST
    assert default.at(utc(2026, 1, 15, 7, 0, 0)).period == "off_peak"  # 23:00 PST


def test_default_is_documented_reference_tariff(default: Tariff) -> None:
    assert default.timezone == "America/Los_Angeles"
    assert default.currency == "USD" and default.export_price_per_kwh == 0.06
    assert default.demand_charge_per_kw == 0.0
    # one weekday and one weekend day, minute by minute
    imp, exp, names = default.prices(local("2026-01-14 00:00"), 2 * 1440, 60)
    wd = Counter(zip(names[:1440], imp[:1440].tolist(), strict=True))
    assert wd == {("off_peak", 0.14): 7 * 60, ("shoulder", 0.24): 12 * 60, ("peak", 0.46): 5 * 60}
    assert (exp == 0.06).all()
    imp, _, names = default.prices(local("2026-01-17 00:00"), 2 * 1440, 60)
    assert set(names) == {"super_off_peak"} and (imp == 0.11).all()
    assert "0.46" in Tariff.default.__doc__ and "0.06" in Tariff.default.__doc__


def test_default_other_timezone() -> None:
    t = Tariff.default("Europe/Berlin")
    assert t.at(local("2026-01-14 16:00", ZoneInfo("Europe/Berlin"))).period == "peak"
    assert t.at(local("2026-01-14 15:59:59", ZoneInfo("Europe/Berlin"))).period == "shoulder"


def test_prices_step_start_semantics(default: Tariff) -> None:
    # a 10-minute step that starts at 15:55 is priced by its start
    imp, _, names = default.prices(local("2026-01-14 15:55"), 3, 600)
    assert names == ["shoulder", "peak", "peak"]
    assert imp.tolist() == [0.24, 0.46, 0.46]
    imp, exp, names = default.prices(local("2026-01-14 15:55"), 0, 600)
    assert imp.size == exp.size == 0 and names == []
    with pytest.raises(ValueError, match="step_s"):
        default.prices(0.0, 3, 0)
    with pytest.raises(ValueError, match="n_steps"):
        default.prices(0.0, -1, 300)
    with pytest.raises(ValueError, match="timestamp"):
        default.at(math.nan)


# ------------------------------------------------------------------------------------------ DST


def test_spring_forward_2026(default: Tariff, dst_tariff: Tariff) -> None:
    # 8 Mar 2026: 02:00 PST jumps to 03:00 PDT at 10:00 UTC; 02:00-03:00 local does not exist
    assert local("2026-03-08 01:59:59") == utc(2026, 3, 8, 9, 59, 59)
    assert local("2026-03-08 03:00") == utc(2026, 3, 8, 10, 0)
    assert dst_tariff.at(utc(2026, 3, 8, 9, 29, 59)) == TariffPoint("a", 0.10, 0.05)  # 01:29:59 PST
    assert dst_tariff.at(utc(2026, 3, 8, 9, 30)) == TariffPoint("b", 0.20, 0.05)  # 01:30 PST
    assert dst_tariff.at(utc(2026, 3, 8, 9, 59, 59)).period == "b"  # 01:59:59 PST
    assert dst_tariff.at(utc(2026, 3, 8, 10, 0)) == TariffPoint("d", 0.40, 0.05)  # 03:00 PDT
    # the 23-hour day, minute by minute: "c" (02:30-03:00) never happens
    day_start, day_end = local("2026-03-08 00:00"), local("2026-03-09 00:00")
    assert day_end - day_start == 23 * 3600
    n = int((day_end - day_start) // 60)
    _, _, names = dst_tariff.prices(day_start, n, 60)
    assert Counter(names) == {"a": 90, "b": 30, "d": 21 * 60}
    # edges after the change follow PDT wall time: 16:00 PDT on Monday 9 Mar is 23:00 UTC
    assert default.at(utc(2026, 3, 9, 22, 59, 59)).period == "shoulder"
    assert default.at(utc(2026, 3, 9, 23, 0)).period == "peak"
    assert default.at(utc(2026, 3, 7, 0, 0)).period == "peak"  # Friday 6 Mar 16:00 PST
    assert default.at(utc(2026, 3, 6, 23, 59, 59)).period == "shoulder"
    for t in (default, dst_tariff):
        check_prices_agree_with_at(t, day_start, 23 * 12, 300)
        check_prices_agree_with_at(t, local("2026-03-07 00:00"), 3 * 288, 300)


def test_fall_back_2026(default: Tariff, dst_tariff: Tariff) -> None:
    # 1 Nov 2026: 02:00 PDT goes back to 01:00 PST at 09:00 UTC; 01:00-02:00 local happens twice
    assert local("2026-11-01 01:00", fold=0) == utc(2026, 11, 1, 8, 0)
    assert local("2026-11-01 01:00", fold=1) == utc(2026, 11, 1, 9, 0)
    expected = [
        ((7, 59, 59), "a"),  # 00:59:59 PDT
        ((8, 29, 59), "a"),  # 01:29:59 PDT
        ((8, 30, 0), "b"),  # 01:30 PDT
        ((8, 59, 59), "b"),  # 01:59:59 PDT
        ((9, 0, 0), "a"),  # 01:00 PST, the second time
        ((9, 29, 59), "a"),  # 01:29:59 PST
        ((9, 30, 0), "b"),  # 01:30 PST
        ((10, 29, 59), "b"),  # 02:29:59 PST
        ((10, 30, 0), "c"),  # 02:30 PST
        ((11, 0, 0), "d"),  # 03:00 PST
    ]
    for hms, period in expected:
        assert dst_tariff.at(utc(2026, 11, 1, *hms)).period == period, hms
    day_start, day_end = local("2026-11-01 00:00"), local("2026-11-02 00:00")
    assert day_end - day_start == 25 * 3600
    _, _, names = dst_tariff.prices(day_start, 25 * 60, 60)
    assert Counter(names) == {"a": 120, "b": 90, "c": 30, "d": 21 * 60}
    # Monday 2 Nov, 16:00 PST = 00:00 UTC on 3 Nov
    assert default.at(utc(2026, 11, 2, 23, 59, 59)).period == "shoulder"
    assert default.at(utc(2026, 11, 3, 0, 0)).period == "peak"
    assert default.at(utc(2026, 10, 30, 23, 0)).period == "peak"  # Friday 30 Oct 16:00 PDT
    for t in (default, dst_tariff):
        check_prices_agree_with_at(t, day_start, 25 * 12, 300)
        check_prices_agree_with_at(t, local("2026-10-31 00:00"), 3 * 288 + 12, 300)


def test_dst_in_other_zones() -> None:
    # Europe: 29 Mar 2026 02:00 CET -> 03:00 CEST; Lord Howe shifts by 30 minutes; Auckland is southern
    for zone, day in [
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
        ("Australia/Lord_Howe", "2026-04-05"),
        ("Australia/Lord_Howe", "2026-10-04"),
        ("Pacific/Auckland", "2026-04-05"),
        ("Pacific/Auckland", "2026-09-27"),
    ]:
        t = Tariff(DST_PERIODS, timezone=zone, export_price_per_kwh=0.05)
        check_prices_agree_with_at(t, local(f"{day} 00:00", ZoneInfo(zone)), 25 * 12, 300)
        _, _, names = t.prices(local(f"{day} 00:00", ZoneInfo(zone)), 2 * 1440, 60)
        assert len(set(names)) >= 3


def test_random_week_agrees_with_at(default: Tariff, dst_tariff: Tariff, seasonal: Tariff) -> None:
    rng = random.Random(20260308)
    for t in (default, dst_tariff, seasonal):
        start = rng.uniform(utc(2020, 1, 1), utc(2035, 1, 1))
        check_prices_agree_with_at(t, start, 7 * 288, 300)


@pytest.mark.parametrize(
    "zone",
    ["America/Los_Angeles", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "America/Sao_Paulo"],
)
def test_vectorised_matches_scalar_on_random_times(zone: str) -> None:
    periods = [
        Period("w", 0.1, None, "weekdays", "00:00", "01:37"),
        Period("x", 0.2, None, "weekdays", "01:37", "02:15"),
        Period("y", 0.3, None, "weekdays", "02:15", "13:00"),
        Period("z", 0.4, 0.2, "weekdays", "13:00", "24:00"),
        Period("we", 0.05, None, "weekends", "00:00", "24:00", months=(1, 2, 3, 4, 5, 6)),
        Period("we2", 0.06, None, "weekends", "00:00", "24:00", months=(7, 8, 9, 10, 11, 12)),
    ]
    t = Tariff(periods, timezone=zone, export_price_per_kwh=0.01)
    rng = np.random.default_rng(7)
    ts = np.sort(rng.uniform(utc(1995, 1, 1), utc(2040, 1, 1), 3000))
    ts = np.concatenate([ts, np.floor(ts[:500])])  # whole seconds too, and not sorted overall
    imp, exp, names = t.prices_at(ts)
    for k, x in enumerate(ts.tolist()):
        p = t.at(x)
        assert (names[k], imp[k], exp[k]) == (p.period, p.import_price_per_kwh, p.export_price_per_kwh), x


# ------------------------------------------------------------------------------------------ seasons, export


def test_seasons_and_per_period_export(seasonal: Tariff) -> None:
    # 2026-07-15 Wednesday (summer), 2026-07-18 Saturday, 2026-01-14 Wednesday (winter)
    cases = [
        ("2026-07-15 17:00", "peak", 0.58, 0.12),
        ("2026-07-15 15:59:59", "mid_peak", 0.33, 0.05),
        ("2026-07-15 21:00", "mid_peak", 0.33, 0.05),
        ("2026-07-15 23:00", "off_peak", 0.27, 0.05),
        ("2026-07-15 06:59:59", "off_peak", 0.27, 0.05),
        ("2026-07-18 17:00", "mid_peak", 0.38, 0.05),
        ("2026-07-18 12:00", "off_peak", 0.27, 0.05),
        ("2026-01-14 17:00", "peak", 0.41, 0.05),
        ("2026-01-14 12:00", "super_off_peak", 0.22, 0.03),
        ("2026-01-17 12:00", "super_off_peak", 0.22, 0.03),
        ("2026-01-14 07:59:59", "off_peak", 0.30, 0.05),
        # season edges: Sunday 31 May -> Monday 1 June; Wednesday 30 Sep -> Thursday 1 Oct
        ("2026-05-31 23:59:59", "off_peak", 0.30, 0.05),
        ("2026-06-01 00:00", "off_peak", 0.27, 0.05),
        ("2026-09-30 16:30", "peak", 0.58, 0.12),
        ("2026-10-01 16:30", "peak", 0.41, 0.05),
    ]
    for when, period, imp, exp in cases:
        assert seasonal.at(local(when)) == TariffPoint(period, imp, exp), when
    check_prices_agree_with_at(seasonal, local("2026-05-30 00:00"), 4 * 288, 300)
    check_prices_agree_with_at(seasonal, local("2026-09-29 00:00"), 4 * 288, 300)
    # a whole year: the summer peak (with its export price) appears only Jun-Sep on weekdays
    imp, exp, _ = seasonal.prices(local("2026-01-01 00:00"), 365 * 24, 3600)
    summer_peak = (imp == 0.58) & (exp == 0.12)
    assert summer_peak.sum() == 5 * 88  # 22 + 23 + 21 + 22 weekdays in Jun-Sep 2026, 5 hours each
    assert seasonal.next_change(local("2026-05-31 23:00")) == local(
        "2026-06-01 00:00"
    )  # same name, new price


def test_period_without_export_uses_tariff_export() -> None:
    t = Tariff(
        [
            Period("day", 0.3, 0.08, "all", "07:00", "19:00"),
            Period("night", -0.02, None, "all", "19:00", "07:00"),  # negative prices are allowed
        ],
        timezone="UTC",
        export_price_per_kwh=0.04,
    )
    assert t.at(utc(2026, 1, 1, 12)) == TariffPoint("day", 0.3, 0.08)
    assert t.at(utc(2026, 1, 1, 20)) == TariffPoint("night", -0.02, 0.04)
    assert t.at(utc(2026, 1, 1, 6, 59, 59)) == TariffPoint("night", -0.02, 0.04)


# ------------------------------------------------------------------------------------------ dynamic prices

DYN_PRICES = [0.30, -0.05, 0.10, 0.50, 0.50, 0.20]


def test_dynamic_overrides_inside_window(default: Tariff) -> None:
    # Monday 9 Mar 2026, hourly from 12:00 to 18:00 PDT; export not in the series -> TOU export
    series = PriceSeries.from_steps(local("2026-03-09 12:00"), 3600, DYN_PRICES)
    assert series.end_ts == local("2026-03-09 18:00")
    t = default.with_dynamic(series)
    assert default.dynamic is None  # with_dynamic returns a new tariff
    assert t.at(local("2026-03-09 11:59:59")) == TariffPoint("shoulder", 0.24, 0.06)
    assert t.at(local("2026-03-09 12:00")) == TariffPoint(DYNAMIC_PERIOD, 0.30, 0.06)
    assert t.at(local("2026-03-09 12:59:59")) == TariffPoint(DYNAMIC_PERIOD, 0.30, 0.06)
    assert t.at(local("2026-03-09 13:00")) == TariffPoint(DYNAMIC_PERIOD, -0.05, 0.06)
    assert t.at(local("2026-03-09 16:30")) == TariffPoint(DYNAMIC_PERIOD, 0.50, 0.06)  # not the TOU 0.46
    assert t.at(local("2026-03-09 17:59:59")) == TariffPoint(DYNAMIC_PERIOD, 0.20, 0.06)
    assert t.at(local("2026-03-09 18:00")) == TariffPoint("peak", 0.46, 0.06)  # end_ts: TOU again
    imp, exp, names = t.prices(local("2026-03-09 11:00"), 8, 3600)
    assert imp.tolist() == [0.24, *DYN_PRICES, 0.46]
    assert names == ["shoulder", *[DYNAMIC_PERIOD] * 6, "peak"]
    assert (exp == 0.06).all()
    check_prices_agree_with_at(t, local("2026-03-09 00:00"), 288, 300)
    # next_change inside the window: the next different price, or the end of the window
    assert t.next_change(local("2026-03-09 11:00")) == local("2026-03-09 12:00")
    assert t.next_change(local("2026-03-09 12:30")) == local("2026-03-09 13:00")
    assert t.next_change(local("2026-03-09 15:10")) == local("2026-03-09 17:00")  # 15:00 and 16:00 equal
    assert t.next_change(local("2026-03-09 17:30")) == local("2026-03-09 18:00")
    assert t.next_change(local("2026-03-09 18:00")) == local("2026-03-09 21:00")


def test_dynamic_with_export_and_irregular_steps(default: Tariff) -> None:
    starts = np.array([local("2026-03-09 12:00"), local("2026-03-09 12:15"), local("2026-03-09 13:00")])
    series = PriceSeries(starts, np.array([0.2, 0.25, 0.3]), np.array([0.07, 0.09, -0.01]))
    assert series.end_ts == local("2026-03-09 13:45")  # last step as long as the one before (45 min)
    t = default.with_dynamic(series)
    assert t.at(local("2026-03-09 12:14:59")) == TariffPoint(DYNAMIC_PERIOD, 0.2, 0.07)
    assert t.at(local("2026-03-09 12:15")) == TariffPoint(DYNAMIC_PERIOD, 0.25, 0.09)
    assert t.at(local("2026-03-09 13:44:59")) == TariffPoint(DYNAMIC_PERIOD, 0.3, -0.01)
    assert t.at(local("2026-03-09 13:45")) == TariffPoint("shoulder", 0.24, 0.06)
    check_prices_agree_with_at(t, local("2026-03-09 11:00"), 4 * 60, 60)
    assert t.with_dynamic(None).to_dict() == default.to_dict()


def test_price_series_validation() -> None:
    with pytest.raises(TariffError, match=r"dynamic\.import_price_per_kwh\[1\] = nan"):
        PriceSeries(np.array([0.0, 60.0]), np.array([0.1, math.nan]))
    with pytest.raises(TariffError, match=r"dynamic\.start_ts\[1\].*strictly increasing"):
        PriceSeries(np.array([0.0, 0.0]), np.array([0.1, 0.2]))
    with pytest.raises(TariffError, match=r"dynamic\.import_price_per_kwh.*same length"):
        PriceSeries(np.array([0.0, 60.0]), np.array([0.1]))
    with pytest.raises(TariffError, match=r"dynamic\.export_price_per_kwh.*same length"):
        PriceSeries(np.array([0.0, 60.0]), np.array([0.1, 0.2]), np.array([0.1]))
    with pytest.raises(TariffError, match=r"dynamic\.end_ts: required"):
        PriceSeries(np.array([0.0]), np.array([0.1]))
    with pytest.raises(TariffError, match=r"dynamic\.end_ts = 30.0: must be after"):
        PriceSeries(np.array([0.0, 60.0]), np.array([0.1, 0.2]), end_ts=30.0)
    s = PriceSeries(np.array([0.0]), np.array([-0.3]), end_ts=900.0)  # negative: fine
    assert s.end_ts == 900.0 and not s.start_ts.flags.writeable


# ------------------------------------------------------------------------------------------ validation


def test_gap_names_day_type_time_and_neighbours(default: Tariff) -> None:
    periods = [p for p in default.periods if p.name != "peak"]
    with pytest.raises(TariffError) as e:
        Tariff(periods, timezone="America/Los_Angeles", export_price_per_kwh=0.06)
    msg = str(e.value)
    assert "tariff.periods: gap on weekdays in every month from 16:00 to 21:00" in msg
    assert "tariff.periods[1] 'shoulder' (weekdays 06:00–16:00)" in msg
    assert "tariff.periods[2] 'shoulder' (weekdays 21:00–23:00)" in msg


def test_gap_in_a_season() -> None:
    periods = [
        Period("wd", 0.2, None, "weekdays", "00:00", "24:00"),
        Period("summer_we", 0.1, None, "weekends", "00:00", "24:00", months=(6, 7, 8, 9)),
    ]
    with pytest.raises(
        TariffError, match=r"gap on weekends in Jan, Feb, Mar, Apr, May, Oct, Nov, Dec from 00:00"
    ):
        Tariff(periods, timezone="UTC", export_price_per_kwh=0.0)


def test_overlap_names_periods(default: Tariff) -> None:
    periods = [*default.periods, Period("evening", 0.3, None, "all", "20:00", "22:00")]
    with pytest.raises(TariffError) as e:
        Tariff(periods, timezone="America/Los_Angeles", export_price_per_kwh=0.06)
    msg = str(e.value)
    assert "tariff.periods: overlap on weekdays in every month from 20:00 to 21:00" in msg
    assert "tariff.periods[2] 'peak' (weekdays 16:00–21:00)" in msg
    assert "tariff.periods[5] 'evening' (all 20:00–22:00)" in msg


def test_overlap_across_midnight_wrap() -> None:
    periods = [
        Period("night", 0.1, None, "all", "22:00", "07:00"),
        Period("day", 0.2, None, "all", "06:00", "22:00"),
    ]
    with pytest.raises(TariffError, match="overlap on weekdays in every month from 06:00 to 07:00"):
        Tariff(periods, timezone="UTC", export_price_per_kwh=0.0)


def base_dict() -> dict:
    return {
        "name": "t",
        "timezone": "America/Los_Angeles",
        "export_price_per_kwh": 0.06,
        "periods": [
            {"name": "day", "days": "all", "start": "06:00", "end": "21:00", "import_price_per_kwh": 0.3},
            {"name": "night", "days": "all", "start": "21:00", "end": "06:00", "import_price_per_kwh": 0.1},
        ],
    }


def with_change(path: tuple, value: object) -> dict:
    d = base_dict()
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (
            ("periods", 1, "start"),
            "25:00",
            r"tariff\.periods\[1\]\.start = '25:00'.*'HH:MM' from 00:00 to 23:59",
        ),
        (("periods", 1, "start"), "24:00", r"tariff\.periods\[1\]\.start = '24:00'"),
        (("periods", 0, "end"), "21:60", r"tariff\.periods\[0\]\.end = '21:60'.*00:00 to 24:00"),
        (("periods", 0, "end"), "9pm", r"tariff\.periods\[0\]\.end = '9pm'"),
        (("periods", 0, "end"), 21, r"tariff\.periods\[0\]\.end = 21:"),
        (("periods", 0, "end"), "06:00", r"tariff\.periods\[0\]\.end = '06:00': equals start"),
        (
            ("periods", 0, "days"),
            "weekday",
            r"tariff\.periods\[0\]\.days = 'weekday'.*'weekdays', 'weekends', 'all'",
        ),
        (
            ("periods", 0, "import_price_per_kwh"),
            math.nan,
            r"tariff\.periods\[0\]\.import_price_per_kwh = nan",
        ),
        (
            ("periods", 0, "import_price_per_kwh"),
            "0.3",
            r"tariff\.periods\[0\]\.import_price_per_kwh = '0.3'",
        ),
        (("periods", 0, "import_price_per_kwh"), True, r"tariff\.periods\[0\]\.import_price_per_kwh = True"),
        (
            ("periods", 1, "export_price_per_kwh"),
            math.inf,
            r"tariff\.periods\[1\]\.export_price_per_kwh = inf",
        ),
        (("periods", 1, "months"), [1, 13], r"tariff\.periods\[1\]\.months\[1\] = 13.*1 to 12"),
        (("periods", 1, "months"), [1, 1], r"tariff\.periods\[1\]\.months = \[1, 1\]: lists a month twice"),
        (("periods", 1, "name"), "", r"tariff\.periods\[1\]\.name = ''"),
        (
            ("periods", 1, "price"),
            0.1,
            r"tariff\.periods\[1\]\.price: unknown key 'price'.*allowed: days, end",
        ),
        (("peroids",), [], r"tariff\.peroids: unknown key 'peroids'.*allowed: currency, .*periods, timezone"),
        (("export_price_per_kwh",), math.nan, r"tariff\.export_price_per_kwh = nan"),
        (("demand_charge_per_kw",), -1.0, r"tariff\.demand_charge_per_kw = -1.0: must be >= 0"),
        (("timezone",), "Mars/Olympus", r"tariff\.timezone = 'Mars/Olympus': unknown time zone"),
        (("currency",), "dollars", r"tariff\.currency = 'dollars'.*ISO 4217"),
        (("periods",), [], r"tariff\.periods: is empty"),
        (("periods",), {"name": "x"}, r"tariff\.periods = .*array of tables"),
    ],
)
def test_from_dict_errors_name_the_key(path: tuple, value: object, match: str) -> None:
    with pytest.raises(TariffError, match=match):
        Tariff.from_dict(with_change(path, value))


def test_from_dict_missing_keys_and_site_timezone() -> None:
    d = base_dict()
    del d["timezone"]
    with pytest.raises(TariffError, match=r"tariff\.timezone: missing"):
        Tariff.from_dict(d)
    t = Tariff.from_dict(d, timezone="Europe/Paris")  # the site's
    assert t.timezone == "Europe/Paris"
    assert Tariff.from_dict(base_dict(), timezone="Europe/Paris").timezone == "America/Los_Angeles"
    d = base_dict()
    del d["export_price_per_kwh"]
    with pytest.raises(TariffError, match=r"tariff\.export_price_per_kwh: missing"):
        Tariff.from_dict(d)
    d = base_dict()
    del d["periods"][0]["start"]
    with pytest.raises(TariffError, match=r"tariff\.periods\[0\]\.start: missing"):
        Tariff.from_dict(d)
    with pytest.raises(TariffError, match=r"site\.tariff\.periods\[0\]\.days = 'daily'"):
        Tariff.from_dict(with_change(("periods", 0, "days"), "daily"), path="site.tariff")


def test_negative_prices_and_defaults_allowed() -> None:
    d = with_change(("periods", 1, "import_price_per_kwh"), -0.03)
    del d["periods"][0]["days"]  # defaults to "all"
    t = Tariff.from_dict(d)
    assert t.periods[0].days == "all"
    assert t.at(local("2026-07-04 03:00")) == TariffPoint("night", -0.03, 0.06)
    assert t.currency == "USD" and t.demand_charge_per_kw == 0.0


def test_period_and_point_are_frozen(default: Tariff) -> None:
    with pytest.raises(AttributeError):
        default.periods[0].start = "22:00"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        default.at(0.0).period = "x"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ TOML, to_dict

SECTION_FORM = """
[tariff]
name = "Reference TOU"
currency = "USD"
timezone = "America/Los_Angeles"
export_price_per_kwh = 0.06
demand_charge_per_kw = 9.5

[[tariff.periods]]
name = "off_peak"
days = "weekdays"
start = "23:00"
end = "06:00"
import_price_per_kwh = 0.14

[[tariff.periods]]
name = "shoulder"
days = "weekdays"
start = "06:00"
end = "16:00"
import_price_per_kwh = 0.24

[[tariff.periods]]
name = "peak"
days = "weekdays"
start = 16:00:00
end = "21:00"
import_price_per_kwh = 0.46
export_price_per_kwh = 0.10

[[tariff.periods]]
name = "shoulder"
days = "weekdays"
start = "21:00"
end = "23:00"
import_price_per_kwh = 0.24

[[tariff.periods]]
name = "super_off_peak"
days = "weekends"
start = "00:00"
end = "24:00"
import_price_per_kwh = 0.11
"""


def test_load_section_and_top_level_forms(tmp_path: Path, default: Tariff) -> None:
    a = tmp_path / "section.toml"
    a.write_text(SECTION_FORM)
    b = tmp_path / "top.toml"
    b.write_text(SECTION_FORM.replace("[tariff]\n", "").replace("[[tariff.periods]]", "[[periods]]"))
    ta, tb = Tariff.load(a), Tariff.load(str(b))
    assert ta == tb
    assert ta.demand_charge_per_kw == 9.5 and ta.periods[2].start == "16:00"  # TOML time literal accepted
    assert ta.at(local("2026-01-14 16:00")) == TariffPoint("peak", 0.46, 0.10)
    assert ta.at(local("2026-01-14 15:59:59")) == TariffPoint("shoulder", 0.24, 0.06)
    start = local("2026-01-12 00:00")
    ia, ea, na = ta.prices(start, 7 * 288, 300)
    idf, edf, ndf = default.prices(start, 7 * 288, 300)
    assert na == ndf and np.array_equal(ia, idf)
    assert np.array_equal(ea[np.array(na) != "peak"], edf[np.array(na) != "peak"])


def test_load_errors_name_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(SECTION_FORM.replace('end = "21:00"', 'end = "25:00"'))
    with pytest.raises(TariffError, match=r"bad\.toml: tariff\.periods\[2\]\.end = '25:00'"):
        Tariff.load(f)
    f.write_text(
        SECTION_FORM.replace("[tariff]\n", "").replace("[[tariff.periods]]", "[[periods]]") + "\nfoo = 1\n"
    )
    with pytest.raises(TariffError, match=r"bad\.toml: periods\[4\]\.foo: unknown key 'foo'"):
        Tariff.load(f)
    f.write_text('colour = "red"\n' + SECTION_FORM)
    with pytest.raises(TariffError, match=r"bad\.toml: colour: unknown top-level key beside \[tariff\]"):
        Tariff.load(f)
    f.write_text("[tariff\n")
    with pytest.raises(TariffError, match=r"bad\.toml: invalid TOML"):
        Tariff.load(f)
    f.write_text(SECTION_FORM.replace('timezone = "America/Los_Angeles"\n', ""))
    with pytest.raises(TariffError, match=r"bad\.toml: tariff\.timezone: missing"):
        Tariff.load(f)
    assert Tariff.load(f, timezone="America/New_York").timezone == "America/New_York"


def test_example_file_loads(seasonal: Tariff) -> None:
    assert seasonal.name == "Seasonal TOU (example)"
    assert len(seasonal.periods) == 9
    assert {p.months for p in seasonal.periods} == {(6, 7, 8, 9), (1, 2, 3, 4, 5, 10, 11, 12)}


def test_to_dict_round_trip(default: Tariff, seasonal: Tariff) -> None:
    dyn = default.with_dynamic(
        PriceSeries.from_steps(local("2026-03-09 12:00"), 3600, DYN_PRICES, [0.01] * 6)
    )
    for t in (default, seasonal, dyn):
        d = t.to_dict()
        back = Tariff.from_dict(d)
        assert back == t and back.to_dict() == d
        start = local("2026-03-09 00:00")
        a, b = t.prices(start, 288, 300), back.prices(start, 288, 300)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert "dynamic" in dyn.to_dict() and "dynamic" not in default.to_dict()
    assert default.to_dict()["periods"][2] == {
        "name": "peak",
        "days": "weekdays",
        "start": "16:00",
        "end": "21:00",
        "import_price_per_kwh": 0.46,
    }
    assert default != seasonal


# ------------------------------------------------------------------------------------------ next_change


def test_next_change_default(default: Tariff) -> None:
    cases = [
        ("2026-01-14 10:00", "2026-01-14 16:00"),
        ("2026-01-14 15:59:59", "2026-01-14 16:00"),
        ("2026-01-14 16:00", "2026-01-14 21:00"),  # strictly after ts
        ("2026-01-14 21:00", "2026-01-14 23:00"),
        ("2026-01-14 22:30", "2026-01-14 23:00"),
        ("2026-01-14 23:00", "2026-01-15 06:00"),  # off-peak runs through midnight
        ("2026-01-16 23:30", "2026-01-17 00:00"),  # Friday night -> Saturday super off-peak
        ("2026-01-17 12:00", "2026-01-19 00:00"),  # the whole weekend
        ("2026-03-07 12:00", "2026-03-09 00:00"),  # a weekend with a 23 h Sunday
        ("2026-03-09 12:00", "2026-03-09 16:00"),
    ]
    for when, expected in cases:
        assert default.next_change(local(when)) == local(expected), when
    assert default.next_change(local("2026-01-14 10:00") + 0.25) == local("2026-01-14 16:00")


def test_next_change_across_dst(dst_tariff: Tariff) -> None:
    # spring forward: "b" from 01:30 PST until the jump to 03:00 PDT ("d"); "c" is skipped
    assert dst_tariff.next_change(utc(2026, 3, 8, 9, 45)) == utc(2026, 3, 8, 10, 0)
    # fall back: "b" at 01:45 PDT ends when the clock goes back to 01:00 PST ("a" again)
    assert dst_tariff.next_change(utc(2026, 11, 1, 8, 45)) == utc(2026, 11, 1, 9, 0)
    assert dst_tariff.next_change(utc(2026, 11, 1, 9, 0)) == utc(2026, 11, 1, 9, 30)  # 01:30 PST
    assert dst_tariff.next_change(utc(2026, 11, 1, 9, 30)) == utc(2026, 11, 1, 10, 30)  # 02:30 PST
    # a 30-minute DST shift (Lord Howe, 5 Apr 2026: 02:00 LHDT -> 01:30 LHST at 15:00 UTC on 4 Apr)
    lh = Tariff(DST_PERIODS, timezone="Australia/Lord_Howe", export_price_per_kwh=0.0)
    assert lh.at(utc(2026, 4, 4, 14, 59, 59)).period == "b"  # 01:59:59 LHDT
    assert lh.at(utc(2026, 4, 4, 15, 0)).period == "b"  # 01:30 LHST
    assert lh.next_change(utc(2026, 4, 4, 14, 45)) == utc(2026, 4, 4, 16, 0)  # 02:30 LHST


def test_next_change_flat_tariff_is_inf() -> None:
    flat = Tariff(
        [Period("flat", 0.25, None, "all", "00:00", "24:00")], timezone="UTC", export_price_per_kwh=0.05
    )
    assert flat.next_change(utc(2026, 1, 1)) == math.inf
    series = PriceSeries(np.array([utc(2026, 1, 2)]), np.array([0.5]), end_ts=utc(2026, 1, 2, 1))
    dyn = flat.with_dynamic(series)
    assert dyn.next_change(utc(2026, 1, 1)) == utc(2026, 1, 2)
    assert dyn.next_change(utc(2026, 1, 2, 0, 30)) == utc(2026, 1, 2, 1)
    assert dyn.next_change(utc(2026, 1, 2, 1)) == math.inf
    # periods with different names but nothing else changing still count as changes
    two = Tariff(
        [
            Period("am", 0.25, None, "all", "00:00", "12:00"),
            Period("pm", 0.25, None, "all", "12:00", "24:00"),
        ],
        timezone="UTC",
        export_price_per_kwh=0.05,
    )
    assert two.next_change(utc(2026, 1, 1, 3)) == utc(2026, 1, 1, 12)


def test_year_at_five_minutes_is_fast(seasonal: Tariff) -> None:
    # the brief: well under 1 s (about 10 ms here); a loose bound so a slow CI machine does not flake
    import time

    t0 = time.perf_counter()
    imp, exp, names = seasonal.prices(local("2026-01-01 00:00"), 365 * 288, 300)
    assert time.perf_counter() - t0 < 1.0
    assert imp.size == exp.size == len(names) == 105_120
    assert Counter(names)["peak"] == 5 * 12 * (88 + 365 - 122)  # summer weekday + winter daily peaks
