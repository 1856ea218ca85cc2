// Live overview: one snapshot from /api/live, then a reading per message.
"use strict";
const state = { devices: {}, info: {}, status: null };

function kw(w) { return w === undefined || w === null ? "–" : (Math.abs(w) / 1000).toFixed(2) + " kW"; }
function set(key, text) { document.querySelectorAll(`[data-v="${key}"]`).forEach(e => { e.textContent = text; }); }
function val(id, q) { const d = state.devices[id]; return d && d[q] ? d[q].value : undefined; }
function byCap(cap) { return Object.values(state.info).find(i => i.capabilities.includes(cap)); }

function render() {
  const meter = byCap("grid_meter"), inv = byCap("pv_inverter"), bat = byCap("battery"),
        ev = byCap("ev_charger"), th = byCap("thermostat");
  const grid = meter ? val(meter.device_id, "grid_power_w") : undefined;
  const pv = inv ? val(inv.device_id, "pv_power_w") : undefined;
  const batt = bat ? val(bat.device_id, "battery_power_w") : undefined;
  const evw = ev ? val(ev.device_id, "power_w") : undefined;
  set("pv", kw(pv)); set("grid", kw(grid));
  set("grid-dir", grid === undefined ? "" : grid >= 0 ? "importing" : "exporting");
  set("battery", kw(batt));
  const soc = bat ? val(bat.device_id, "soc_pct") : undefined;
  set("soc", soc === undefined ? "" : `${soc.toFixed(1)} % · ${batt >= 0 ? "charging" : "discharging"}`);
  set("ev", kw(evw));
  const plugged = ev ? val(ev.device_id, "ev_plugged") : undefined;
  const evsoc = ev ? val(ev.device_id, "ev_soc_pct") : undefined;
  set("ev-state", plugged ? `plugged · ${evsoc !== undefined ? evsoc.toFixed(0) + " %" : ""}` : "away");
  if (grid !== undefined && pv !== undefined && batt !== undefined) set("home", kw(grid + pv - batt - (evw || 0)));
  set("hvac", th ? kw(val(th.device_id, "power_w")) : "–");
  const indoor = th ? val(th.device_id, "indoor_temp_c") : undefined;
  set("indoor", indoor === undefined ? "" : `indoor ${indoor.toFixed(1)} °C`);
  const tbody = document.querySelector("#devices tbody");
  tbody.replaceChildren(...Object.values(state.info).map(i => {
    const tr = document.createElement("tr");
    const rs = Object.entries(state.devices[i.device_id] || {}).filter(([q]) => q !== "status")
      .map(([q, r]) => `${q} ${typeof r.value === "number" ? +r.value.toFixed(2) : r.value}`).join(" · ");
    const st = (state.devices[i.device_id] || {}).status;
    const status = st ? st.value : i.status;
    tr.innerHTML = `<td>${i.name}<br><small>${i.device_id}</small></td><td class="${status}">${status}</td><td>${rs}</td>`;
    return tr;
  }));
}

function applyStatus(s) {
  state.status = s;
  for (const d of s.devices) {
    state.info[d.device_id] = d;
    state.devices[d.device_id] = Object.assign(state.devices[d.device_id] || {}, d.readings);
  }
  set("period", s.tariff.period);
  set("price", `${s.tariff.import_price_per_kwh.toFixed(2)} ${s.tariff.currency}/kWh import, ` +
               `${s.tariff.export_price_per_kwh.toFixed(2)} export`);
  if (s.controller) { set("strategy", s.controller.strategy); set("reasons", s.controller.reasons.join("; ") || "–"); }
  set("time", localTime(s.gateway.time));
}

// The home's own time zone, not the browser's: tariff periods are the site's local time.
function localTime(ts) {
  const tz = state.status ? state.status.gateway.timezone : undefined;
  return new Date(ts * 1000).toLocaleString(undefined, { timeZone: tz, dateStyle: "medium", timeStyle: "medium" }) +
         (tz ? ` (${tz})` : "");
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  const conn = document.getElementById("conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "badge"; };
  ws.onclose = () => { conn.textContent = "reconnecting…"; conn.className = "badge off"; setTimeout(connect, 2000); };
  ws.onmessage = ev => {
    const m = JSON.parse(ev.data);
    if (m.type === "snapshot") applyStatus(m.status);
    else if (m.type === "reading") {
      (state.devices[m.device_id] = state.devices[m.device_id] || {})[m.quantity] = m;
      if (m.quantity === "grid_power_w") set("time", localTime(m.ts));
    }
  };
}

// Controller reasons and tariff change slowly: refresh them from /api/status every 10 s.
setInterval(() => fetch("/api/status").then(r => r.json()).then(applyStatus).catch(() => {}), 10000);
setInterval(render, 500);
connect();
