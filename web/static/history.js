// The "History" page: a day, a week or a month from /api/history — power, energy bought and sold, cost and
// cost without the gateway — and the same range as CSV from /api/history.csv.
"use strict";
(() => {
  const { api, kwh, money, el, setText, chart, destroy, bars, COLORS, isNum } = HEMS;
  const params = new URLSearchParams(location.search);
  const view = { range: params.get("range") || "day", date: params.get("date") || "" };
  let charts = [];

  function query() {
    const q = new URLSearchParams({ range: view.range });
    if (view.date) q.set("date", view.date);
    return q.toString();
  }

  function render(h) {
    charts.forEach(destroy); charts = [];
    const tz = h.timezone, c = h.currency, t = h.totals;
    view.date = h.date;
    document.getElementById("date").value = h.date;
    document.getElementById("range-label").textContent = h.label;
    document.querySelectorAll(".tabs button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === h.range)));
    document.getElementById("next").disabled = !h.next_date;
    document.getElementById("csv").href = "/api/history.csv?" + query();
    const cov = document.getElementById("coverage");
    cov.hidden = !(isNum(h.coverage_pct) && h.coverage_pct < 95);
    cov.textContent = isNum(h.coverage_pct) ? `Readings cover ${h.coverage_pct.toFixed(0)} % of this time (the gateway was off, starting, or the meter was not answering): totals are for the time with readings.` : "";
    if (h.coverage_pct === null) { cov.hidden = false; cov.textContent = "No readings for this time yet."; }
    const used = isNum(t.home_kwh) ? t.home_kwh + (t.ev_kwh || 0) : undefined;
    setText("h-used", kwh(used)); setText("h-pv", kwh(t.pv_kwh)); setText("h-import", kwh(t.import_kwh));
    setText("h-export", kwh(t.export_kwh)); setText("h-cost", HEMS.costWords(t.cost, c)); setText("h-nc", HEMS.costWords(t.cost_no_control, c));
    setText("h-savings", money(t.savings, c));
    setText("h-self", isNum(t.self_sufficiency_pct) ? t.self_sufficiency_pct.toFixed(0) + " %" : "–");
    document.querySelector('[data-v="h-savings"]').className = isNum(t.savings) && t.savings < 0 ? "bad" : "good";
    setText("method", h.savings_method);
    setText("per", h.range === "day" ? "kWh per hour" : "kWh per day");
    setText("per2", h.range === "day" ? "per hour" : "per day");

    const p = h.power;
    const kW = (arr) => arr.map((v) => (isNum(v) ? v / 1000 : null));
    const kwv = (u, v) => (isNum(v) ? v.toFixed(2) + " kW" : "–");
    charts.push(chart(document.getElementById("c-power"), {
      scales: { x: { time: true }, pct: { range: [0, 100] } },
      series: [{},
        { label: "Solar", stroke: COLORS.pv, width: 2, value: kwv },
        { label: "Home", stroke: COLORS.home, width: 2, value: kwv },
        { label: "Battery", stroke: COLORS.battery, width: 2, value: kwv },
        { label: "Car", stroke: COLORS.ev, width: 2, value: kwv },
        { label: "Grid", stroke: COLORS.grid, width: 2.5, value: kwv },
        { label: "Grid without gateway", stroke: COLORS.grid, width: 1.5, dash: [4, 4], show: false, value: kwv },
        { label: "Battery level", stroke: COLORS.battery, width: 1.5, dash: [2, 4], scale: "pct", value: (u, v) => (isNum(v) ? v.toFixed(0) + " %" : "–") }],
      axes: [{}, { values: (u, vals) => vals.map((v) => v + " kW"), size: 60 },
        { scale: "pct", side: 1, values: (u, vals) => vals.map((v) => v + " %"), size: 60, grid: { show: false } }],
    }, [p.ts, kW(p.pv_w), kW(p.home_w), kW(p.battery_w), kW(p.ev_w), kW(p.grid_w), kW(p.grid_no_control_w), p.soc_pct], tz));

    const per = h.periods;
    const span = h.range === "day" ? 3600 : 86400;
    const xs = per.ts.map((x) => x + span / 2);
    const kwhv = (u, v) => (isNum(v) ? v.toFixed(2) + " kWh" : "–");
    charts.push(chart(document.getElementById("c-energy"), {
      scales: { x: { time: true, range: [h.start_ts, h.end_ts] } },
      series: [{},
        { label: "Bought", stroke: COLORS.grid, fill: COLORS.grid, width: 0, paths: bars(-1), points: { show: false }, value: kwhv },
        { label: "Sold", stroke: COLORS.export, fill: COLORS.export, width: 0, paths: bars(1), points: { show: false }, value: kwhv },
        { label: "Solar", stroke: COLORS.pv, width: 2, points: { show: true }, value: kwhv }],
      axes: [{}, { values: (u, vals) => vals.map((v) => v + " kWh"), size: 70 }],
    }, [xs, per.import_kwh, per.export_kwh, per.pv_kwh], tz));

    const mv = (u, v) => (isNum(v) ? money(v, c) : "–");
    charts.push(chart(document.getElementById("c-cost"), {
      scales: { x: { time: true, range: [h.start_ts, h.end_ts] } },
      series: [{},
        { label: "Cost", stroke: COLORS.grid, fill: COLORS.grid, width: 0, paths: bars(-1), points: { show: false }, value: mv },
        { label: "Without the gateway", stroke: COLORS.muted, fill: "#9ca3af", width: 0, paths: bars(1), points: { show: false }, value: mv },
        { label: "Saved", stroke: COLORS.battery, width: 2, value: mv }],
      axes: [{}, { values: (u, vals) => vals.map((v) => money(v, c)), size: 70 }],
    }, [xs, per.cost, per.cost_no_control, per.savings], tz));
  }

  async function load(push = true) {
    const r = await api("/api/history?" + query());
    if (!r.ok) {
      const cov = document.getElementById("coverage");
      cov.hidden = false; cov.textContent = (r.body && r.body.error) || "Could not load the history.";
      return;
    }
    render(r.body);
    if (push) history.replaceState(null, "", "/history?" + query());
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => { view.range = b.dataset.range; load(); }));
    document.getElementById("date").addEventListener("change", (e) => { if (e.target.value) { view.date = e.target.value; load(); } });
    const shift = async (dir) => {
      const r = await api("/api/history?" + query());
      if (!r.ok) return;
      const d = dir < 0 ? r.body.previous_date : r.body.next_date;
      if (d) { view.date = d; load(); }
    };
    document.getElementById("prev").addEventListener("click", () => shift(-1));
    document.getElementById("next").addEventListener("click", () => shift(1));
    load(false);
    setInterval(() => load(false), 60000);
  });
})();
