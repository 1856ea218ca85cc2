// The "Plan" page: the planner's next 24 h from /api/plan as three charts (price; planned power; battery and
// indoor temperature) and a table of what happens when, with the planner's reasons.
"use strict";
(() => {
  const { api, site, kw, money, price, time, periodName, plain, costWords, el, chart, destroy, stepped, COLORS, isNum } = HEMS;
  let charts = [];
  let shown = null;

  const sentence = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : s);

  // what the plan does in one step range, in words
  function describe(p, a, b) {
    const avg = (arr) => { let t = 0, n = 0; for (let i = a; i < b; i++) if (isNum(arr[i])) { t += arr[i]; n++; } return n ? t / n : 0; };
    const out = [];
    const bat = avg(p.battery_w), ev = avg(p.ev_w), hvac = avg(p.hvac_w), wh = avg(p.water_heater_w), grid = avg(p.grid_w);
    if (bat > 50) out.push(`battery charges ${kw(bat)}`);
    else if (bat < -50) out.push(`battery supplies ${kw(bat)}`);
    if (ev > 50) out.push(`car charges ${kw(ev)}`);
    else if (ev < -50) out.push(`car supplies the home ${kw(ev)}`);
    if (hvac > 50) out.push(`heating/cooling ${kw(hvac)}`);
    if (wh > 50) out.push(`water heater ${kw(wh)}`);
    out.push(grid > 50 ? `buy ${kw(grid)}` : grid < -50 ? `sell ${kw(grid)}` : "no grid use");
    return sentence(out.join(", "));
  }

  function render(p, tz, currency, settings) {
    charts.forEach(destroy); charts = [];
    const n = p.grid_w.length, step = p.step_s;
    const xs = Array.from({ length: n + 1 }, (_, i) => p.start_ts + i * step);
    const ext = (arr, f = (v) => v) => { const a = arr.map(f); a.push(a[a.length - 1]); return a; };
    const kW = (v) => (isNum(v) ? v / 1000 : null);
    const fc = p.forecast || {};
    const socs = p.battery_soc_pct.filter(isNum);
    const lowest = socs.length ? Math.min(...socs) : null;
    const reserve = settings ? settings.battery_reserve_pct : null;
    const why = p.reason ? `Planned ${time(p.start_ts, tz)} (${p.reason}).` : `Planned ${time(p.start_ts, tz)}.`;
    document.getElementById("plan-summary").textContent =
      `${why} Expected cost of the next 24 hours: ${costWords(p.cost, currency)}. ` +
      (isNum(lowest) ? `Lowest planned battery level: ${lowest.toFixed(0)} %` + (isNum(reserve) ? ` (your reserve: ${reserve.toFixed(0)} %).` : ".") : "");
    const summary = document.getElementById("plan-summary");
    summary.dataset.lowestSoc = isNum(lowest) ? lowest.toFixed(1) : "";
    summary.dataset.firstSoc = isNum(p.battery_soc_pct[0]) ? p.battery_soc_pct[0].toFixed(1) : "";
    summary.dataset.reserve = isNum(reserve) ? String(reserve) : "";
    document.getElementById("plan-summary").className = "";

    const money4 = (u, v) => (isNum(v) ? money(v, currency, 3) : "–");
    const kwv = (u, v) => (isNum(v) ? v.toFixed(2) + " kW" : "–");
    if (fc.import_price_per_kwh) {
      charts.push(chart(document.getElementById("c-price"), {
        scales: { x: { time: true } },
        series: [{}, { label: "Buy", stroke: COLORS.price, width: 2.5, paths: stepped(), value: money4 },
          { label: "Sell", stroke: COLORS.export, width: 2, dash: [6, 4], paths: stepped(), value: money4 }],
        axes: [{}, { values: (u, vals) => vals.map((v) => money(v, currency)), size: 62 }],
        height: 220,
      }, [xs, ext(fc.import_price_per_kwh), ext(fc.export_price_per_kwh)], tz));
    }
    const series = [{}], data = [xs];
    const add = (label, arr, stroke, extra = {}) => { if (arr) { series.push(Object.assign({ label, stroke, width: 2, paths: stepped(), value: kwv }, extra)); data.push(ext(arr, kW)); } };
    add("Battery", p.battery_w, COLORS.battery, { width: 2.5 });
    add("Car", p.ev_w, COLORS.ev);
    add("Heat/cool", p.hvac_w, COLORS.hvac);
    add("Water heater", p.water_heater_w, COLORS.water);
    add("Grid", p.grid_w, COLORS.grid, { width: 2.5 });
    add("Solar forecast", fc.pv_w, COLORS.pv, { dash: [5, 4] });
    charts.push(chart(document.getElementById("c-power"), {
      scales: { x: { time: true } }, series,
      axes: [{}, { values: (u, vals) => vals.map((v) => v + " kW"), size: 60 }],
    }, data, tz));

    const band = settings ? [settings.comfort_min_c, settings.comfort_max_c] : [null, null];
    const flat = (v) => xs.map(() => (isNum(v) ? v : null));
    charts.push(chart(document.getElementById("c-state"), {
      scales: { x: { time: true }, pct: { range: [0, 100] }, c: { auto: true } },
      series: [{},
        { label: "Battery", stroke: COLORS.battery, width: 2.5, scale: "pct", value: (u, v) => (isNum(v) ? v.toFixed(0) + " %" : "–") },
        { label: "Reserve", stroke: COLORS.battery, width: 1.5, dash: [3, 5], scale: "pct", value: (u, v) => (isNum(v) ? v.toFixed(0) + " %" : "–") },
        { label: "Indoor", stroke: COLORS.hvac, width: 2.5, scale: "c", value: (u, v) => (isNum(v) ? v.toFixed(1) + " °C" : "–") },
        { label: "Comfort min", stroke: COLORS.muted, width: 1.5, dash: [6, 4], scale: "c", value: (u, v) => (isNum(v) ? v.toFixed(1) + " °C" : "–") },
        { label: "Comfort max", stroke: COLORS.muted, width: 1.5, dash: [6, 4], scale: "c", value: (u, v) => (isNum(v) ? v.toFixed(1) + " °C" : "–") },
        { label: "Outdoor", stroke: COLORS.grid, width: 1.5, scale: "c", value: (u, v) => (isNum(v) ? v.toFixed(1) + " °C" : "–") }],
      axes: [{}, { scale: "pct", values: (u, vals) => vals.map((v) => v + " %"), size: 54 },
        { scale: "c", side: 1, values: (u, vals) => vals.map((v) => v + " °C"), size: 60, grid: { show: false } }],
    }, [xs, ext(p.battery_soc_pct), flat(reserve), ext(p.indoor_temp_c), flat(band[0]), flat(band[1]), fc.outdoor_temp_c ? ext(fc.outdoor_temp_c) : flat(null)], tz));

    // the "why" table: consecutive steps with the same reasons make one row
    const rows = [];
    let a = 0;
    const key = (i) => (p.reasons[i] || []).join("|");
    for (let i = 1; i <= n; i++) {
      if (i === n || key(i) !== key(a)) { rows.push([a, i]); a = i; }
    }
    const tbody = document.querySelector("#why tbody");
    tbody.replaceChildren(...rows.map(([a, b]) => {
      const prices = fc.import_price_per_kwh ? [...new Set(fc.import_price_per_kwh.slice(a, b).map((v) => price(v, currency)))] : [];
      const period = fc.period ? periodName(fc.period[a]) : "";
      return el("tr", {},
        el("td", { class: "num", text: `${time(xs[a], tz)}–${time(xs[b], tz)}` }),
        el("td", {}, el("span", { text: prices.slice(0, 2).join(" / ") }), el("br"), el("small", { text: period })),
        el("td", { text: describe(p, a, b) }),
        el("td", { text: (p.reasons[a] || []).map(plain).join("; ") || "–" }));
    }));
  }

  async function load() {
    const [r, s, st] = await Promise.all([api("/api/plan"), site(), api("/api/settings")]);
    const summary = document.getElementById("plan-summary");
    if (!r.ok) {
      summary.textContent = (r.body && r.body.error) ? `No plan to show: ${r.body.error}.` : "No plan to show yet.";
      return;
    }
    const p = r.body;
    const sig = `${p.start_ts}|${p.cost}|${p.reason}`;
    if (sig === shown) return;
    shown = sig;
    render(p, s.timezone, s.currency, st.ok ? st.body : null);
  }

  document.addEventListener("DOMContentLoaded", () => { load(); setInterval(load, 20000); });
})();
