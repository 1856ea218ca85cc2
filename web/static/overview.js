// The "Now" page: the live power-flow picture over the /api/live WebSocket (a snapshot, then one message per
// reading), today's energy and cost, the price now, the DR banner with opt-out, and what the gateway is doing.
"use strict";
(() => {
  const { api, kw, kwh, money, price, time, dateTime, periodName, plain, costWords, setText, isNum } = HEMS;
  const state = { values: {}, info: {}, status: {}, tz: undefined, currency: "USD", summary: null, now: null };
  const MIN_W = 20; // below this a flow is drawn as idle

  const ofCap = (cap) => Object.values(state.info).filter((i) => i.capabilities.includes(cap)).map((i) => i.device_id);
  function sum(cap, q) {
    let total, any = false;
    for (const id of ofCap(cap)) {
      const r = (state.values[id] || {})[q];
      if (r && isNum(r.value)) { total = (total || 0) + r.value; any = true; }
    }
    return any ? total : undefined;
  }
  function first(cap, q) {
    for (const id of ofCap(cap)) {
      const r = (state.values[id] || {})[q];
      if (r && r.value !== undefined && r.value !== null) return r.value;
    }
    return undefined;
  }

  function link(id, w, towardsHub) {
    const line = document.getElementById("l-" + id);
    const on = isNum(w) && Math.abs(w) >= MIN_W;
    line.classList.toggle("on", on);
    // lines are drawn from the device to the hub: dashes move that way unless reversed
    line.classList.toggle("rev", on && !towardsHub);
  }

  function render() {
    const grid = sum("grid_meter", "grid_power_w");
    const pv = sum("pv_inverter", "pv_power_w");
    const bat = sum("battery", "battery_power_w");
    const ev = sum("ev_charger", "power_w") ?? (ofCap("ev_charger").length ? 0 : undefined);
    const hvac = sum("thermostat", "power_w");
    let homeAll;
    if (isNum(grid)) homeAll = grid + (pv || 0) - (bat || 0) - (ev || 0);
    const house = isNum(homeAll) ? Math.max(homeAll - (hvac || 0), 0) : undefined;
    setText("pv", kw(pv)); setText("grid", kw(grid)); setText("battery", kw(bat));
    setText("home", kw(house)); setText("ev", kw(ev)); setText("hvac", kw(hvac));
    setText("grid-dir", !isNum(grid) ? "" : Math.abs(grid) < MIN_W ? "idle" : grid > 0 ? "buying" : "selling");
    const soc = first("battery", "soc_pct");
    setText("soc", isNum(soc) ? `${soc.toFixed(0)} % full` : "");
    const plugged = first("ev_charger", "ev_plugged");
    const evSoc = first("ev_charger", "ev_soc_pct");
    setText("ev-state", plugged === undefined ? "" : plugged ? (isNum(evSoc) ? `plugged in · ${evSoc.toFixed(0)} %` : "plugged in") : "not plugged in");
    const indoor = first("thermostat", "indoor_temp_c");
    setText("indoor", isNum(indoor) ? `${indoor.toFixed(1)} °C inside` : "");
    link("pv", pv, true); link("grid", grid, grid > 0); link("battery", bat, bat < 0);
    link("home", house, false); link("ev", ev, ev < 0); link("hvac", hvac, false);
    setText("words", words({ grid, pv, bat, ev, hvac, house, soc }));
    if (state.now) setText("clock", time(state.now, state.tz, { weekday: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" }));
  }

  // the picture in one or two plain sentences
  function words({ grid, pv, bat, ev, hvac, house, soc }) {
    if (!isNum(grid)) return "Waiting for the meter…";
    const parts = [];
    if (isNum(pv)) parts.push(pv >= MIN_W ? `Solar makes ${kw(pv)}.` : "No solar power now.");
    const uses = [`the home uses ${kw(house)}`];
    if (isNum(hvac) && hvac >= MIN_W) uses.push(`heating/cooling ${kw(hvac)}`);
    if (isNum(ev) && ev >= MIN_W) uses.push(`the car charges at ${kw(ev)}`);
    parts.push(uses.join(", ").replace(/^t/, "T") + ".");
    if (isNum(bat) && Math.abs(bat) >= MIN_W) {
      parts.push(`The battery ${bat > 0 ? "charges" : "supplies"} ${kw(bat)}${isNum(soc) ? ` (${soc.toFixed(0)} % full)` : ""}.`);
    }
    if (Math.abs(grid) < MIN_W) parts.push("Nothing is bought or sold.");
    else parts.push(grid > 0 ? `You buy ${kw(grid)} from the grid.` : `You sell ${kw(grid)} to the grid.`);
    return parts.join(" ");
  }

  let pending = null;
  function schedule() { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 150); }

  function applyStatus(s) {
    state.tz = s.gateway.timezone; state.currency = s.tariff.currency; state.now = s.gateway.time;
    for (const d of s.devices) {
      state.info[d.device_id] = d;
      state.values[d.device_id] = Object.assign(state.values[d.device_id] || {}, d.readings);
      state.status[d.device_id] = d.status;
    }
    const bad = Object.values(state.status).filter((st) => st !== "ok").length;
    const n = Object.keys(state.status).length;
    setText("devices-line", bad ? `${bad} of ${n} devices need attention` : `All ${n} devices are working`);
    schedule();
  }

  function connect() {
    const conn = document.getElementById("conn");
    conn.hidden = false;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
    ws.onopen = () => { conn.textContent = "● Live"; conn.className = "badge"; };
    ws.onclose = () => {
      conn.textContent = "Reconnecting…"; conn.className = "badge off";
      setTimeout(connect, 2000);
    };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "snapshot") applyStatus(m.status);
      else if (m.type === "reading") {
        if (m.quantity === "status") state.status[m.device_id] = m.value;
        (state.values[m.device_id] = state.values[m.device_id] || {})[m.quantity] = m;
        if (isNum(m.ts) && (!state.now || m.ts > state.now)) state.now = m.ts;
        schedule();
      }
    };
  }

  // --- today's numbers, price, DR, controller ---------------------------------------------------------
  function renderSummary(s) {
    state.summary = s; state.tz = s.timezone; state.currency = s.currency;
    const t = s.today, c = s.currency;
    const used = isNum(t.home_kwh) ? t.home_kwh + (t.ev_kwh || 0) : undefined;
    setText("t-used", kwh(used)); setText("t-pv", kwh(t.pv_kwh));
    setText("t-import", kwh(t.import_kwh)); setText("t-export", kwh(t.export_kwh));
    setText("t-cost", costWords(t.cost, c)); setText("t-savings", money(t.savings, c));
    const sv = document.querySelector('[data-v="t-savings"]');
    sv.className = isNum(t.savings) && t.savings < 0 ? "bad" : "good";
    const p = s.tariff;
    setText("period", periodName(p.period) + " now");
    setText("price-buy", price(p.import_price_per_kwh, c)); setText("price-sell", price(p.export_price_per_kwh, c));
    setText("price-next", p.next ? `Until ${time(p.until_ts, s.timezone)}, then ${periodName(p.next.period).toLowerCase()}: ${price(p.next.import_price_per_kwh, c)} to buy.` : "");
    const reasons = document.getElementById("reasons");
    const list = (s.controller && s.controller.reasons) || [];
    reasons.replaceChildren(...(list.length ? list : ["following the plan"]).map((r) => HEMS.el("li", { text: plain(r) })));
    renderBanner(s.dr_events || []);
  }

  let bannerKey = null;
  function renderBanner(events) {
    const banner = document.getElementById("dr-banner");
    const ev = events.find((e) => e.active && e.can_opt_out) || events.find((e) => e.can_opt_out);
    if (!ev) { banner.hidden = true; bannerKey = null; return; }
    const tz = state.tz;
    const what = ev.level !== null && ev.level !== undefined ? `level ${ev.level}` : ev.objective;
    const until = isNum(ev.end_ts) ? time(ev.end_ts, tz) : "further notice";
    document.getElementById("dr-text").textContent = ev.active
      ? `Your utility asked to use less power now, until ${until} (${what}). The gateway is reducing use.`
      : `Your utility asked to use less power from ${dateTime(ev.start_ts, tz)} until ${until} (${what}). The gateway will reduce use then.`;
    banner.classList.toggle("active", ev.active);
    banner.dataset.key = ev.key;
    if (bannerKey !== ev.key) { document.getElementById("dr-confirm").hidden = true; document.getElementById("dr-optout").hidden = false; }
    bannerKey = ev.key;
    banner.hidden = false;
  }

  async function refreshSummary() {
    const r = await api("/api/summary");
    if (r.ok) renderSummary(r.body);
  }

  function wireBanner() {
    const ask = document.getElementById("dr-optout"), confirmBox = document.getElementById("dr-confirm");
    ask.addEventListener("click", () => { ask.hidden = true; confirmBox.hidden = false; document.getElementById("dr-optout-yes").focus(); });
    document.getElementById("dr-optout-no").addEventListener("click", () => { ask.hidden = false; confirmBox.hidden = true; });
    document.getElementById("dr-optout-yes").addEventListener("click", async () => {
      const key = document.getElementById("dr-banner").dataset.key;
      const r = await api(`/api/dr/${encodeURIComponent(key)}/opt-out`, { method: "POST", body: { reason: "opted out on the dashboard" } });
      const text = document.getElementById("dr-text");
      if (r.ok) {
        text.textContent = "You opted out of this event. The utility has been told; the home runs as usual.";
        confirmBox.hidden = true;
        setTimeout(refreshSummary, 4000);
      } else {
        text.textContent = (r.body && r.body.error) || "Opting out did not work; try again.";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireBanner();
    connect();
    refreshSummary();
    setInterval(refreshSummary, 15000);
  });
})();
