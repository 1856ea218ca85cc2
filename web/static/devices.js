// The "Devices" page: every device's status, when it was last heard from, faults and firmware (/api/devices),
// and the commissioning forms the integrations offer (pair Zigbee, add an inverter, enrol a charger), built from
// their own description of each action's parameters.
"use strict";
(() => {
  const { api, site, ago, dateTime, el, isNum } = HEMS;
  const KINDS = { grid_meter: "Smart meter", pv_inverter: "Solar inverter", battery: "Battery", ev_charger: "EV charger", thermostat: "Thermostat", switch: "Switch" };
  const STATUS = { ok: "Working", offline: "Offline", faulty: "Fault" };
  const FW = { idle: "up to date", downloading: "downloading update", installing: "installing update", installed: "update installed", failed: "update failed" };
  // readings worth showing on a card, with their words
  const SHOW = { grid_power_w: "Grid", pv_power_w: "Solar", battery_power_w: "Battery", soc_pct: "Charge", power_w: "Power", ev_plugged: "Car plugged in", indoor_temp_c: "Indoor", tank_temp_c: "Tank", switch_on: "Switched on", hvac_mode: "Mode", energy_import_wh: "Bought (meter)", energy_export_wh: "Sold (meter)", voltage_v: "Voltage" };
  let tz, clockSpeed = 1;

  function reading(q, r) {
    const v = r.value;
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (!isNum(v)) return String(v);
    if (q.endsWith("_wh")) return (v / 1000).toFixed(1) + " kWh";
    if (q.endsWith("_w")) return (Math.abs(v) >= 1000 ? (v / 1000).toFixed(2) + " kW" : v.toFixed(0) + " W");
    if (q.endsWith("_pct")) return v.toFixed(0) + " %";
    if (q.endsWith("_c")) return v.toFixed(1) + " °C";
    if (q.endsWith("_v")) return v.toFixed(0) + " V";
    return String(+v.toFixed(2));
  }

  function card(d, now) {
    const kinds = d.capabilities.filter((c) => KINDS[c]).map((c) => KINDS[c]).join(" + ") || d.integration;
    const kv = el("dl", { class: "kv" });
    const add = (k, v) => kv.append(el("dt", { text: k }), el("dd", { text: v }));
    add("Type", kinds);
    add("Connected by", d.integration);
    add("Last heard", isNum(d.last_seen_ts) ? ago((now - d.last_seen_ts) / Math.max(clockSpeed, 1)) : "never");
    if (d.manufacturer || d.model) add("Model", [d.manufacturer, d.model].filter(Boolean).join(" "));
    const fw = d.firmware;
    if (fw) {
      const u = fw.update || {};
      add("Firmware", (fw.version || "unknown") + (u.state ? ` · ${FW[u.state] || u.state}` : ""));
      if (u.state === "downloading" || u.state === "installing") {
        const bar = el("progress", { max: "100", value: isNum(u.progress_pct) ? String(u.progress_pct) : undefined, "aria-label": "Update progress" });
        kv.append(el("dt", { text: "Progress" }), el("dd", {}, bar, el("small", { text: isNum(u.progress_pct) ? ` ${u.progress_pct.toFixed(0)} %` : "" })));
      }
      if (u.target_version && u.state !== "idle") add("New version", u.target_version);
      if (u.message) add("Update says", u.message);
    }
    for (const [q, label] of Object.entries(SHOW)) if (d.readings[q]) add(label, reading(q, d.readings[q]));
    const parts = [
      el("div", { class: "device-head" }, el("div", {}, el("h3", { text: d.name }), el("small", { text: d.device_id })),
        el("span", { class: "pill " + d.status, text: STATUS[d.status] || d.status })),
    ];
    if (d.status !== "ok" && d.status_reason) parts.push(el("p", { class: "bad", text: d.status_reason }));
    parts.push(kv);
    if (d.faults && d.faults.length) {
      parts.push(el("h3", { text: "Recent faults" }), el("ul", {}, d.faults.map((f) => el("li", { text: `${dateTime(f.ts, tz)}: ${f.message || f.reason || JSON.stringify(f)}` }))));
    }
    return el("section", { class: "card", "data-device": d.device_id }, ...parts);
  }

  // --- commissioning forms ------------------------------------------------------------------------------
  function input(name, spec, id) {
    const t = (spec.type || "string").toLowerCase();
    const choices = spec.choices || spec.options || spec.enum;
    if (Array.isArray(choices)) {
      return el("select", { id, name }, choices.map((c) => el("option", { value: String(c), text: String(c), selected: c === spec.default })));
    }
    if (t === "boolean" || t === "bool") return el("input", { id, name, type: "checkbox", checked: !!spec.default });
    const attrs = { id, name, type: "text", value: spec.default !== undefined && spec.default !== null ? String(spec.default) : "" };
    if (["integer", "int", "number", "float"].includes(t)) {
      Object.assign(attrs, { type: "number", step: t.startsWith("int") ? "1" : "any", inputmode: "decimal" });
      if (isNum(spec.min)) attrs.min = String(spec.min);
      if (isNum(spec.max)) attrs.max = String(spec.max);
    }
    if (t === "password" || t === "secret") attrs.type = "password";
    if (spec.placeholder) attrs.placeholder = spec.placeholder;
    return el("input", attrs);
  }

  function value(field, spec) {
    const t = (spec.type || "string").toLowerCase();
    if (field.type === "checkbox") return field.checked;
    if (field.value === "") return undefined;
    if (t.startsWith("int")) return Number.parseInt(field.value, 10);
    if (t === "number" || t === "float") return Number.parseFloat(field.value);
    return field.value;
  }

  // any "..._remaining_s" in a result or an action's state becomes a live countdown
  function remaining(obj) {
    for (const [k, v] of Object.entries(obj || {})) if (k.endsWith("remaining_s") && isNum(v) && v > 0) return v;
    return 0;
  }
  const timers = new Map();
  function countdown(box, seconds, what) {
    clearInterval(timers.get(box));
    const end = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.round((end - Date.now()) / 1000));
      box.replaceChildren(left > 0 ? el("p", {}, el("span", { class: "countdown", text: `${left} s` }), ` left: ${what}`) : el("p", { text: "Closed again." }));
      if (left <= 0) { clearInterval(timers.get(box)); loadDevices(); }
    };
    tick();
    timers.set(box, setInterval(tick, 1000));
  }

  function showResult(box, result) {
    const entries = Object.entries(result || {}).filter(([k]) => !k.endsWith("remaining_s") && !k.endsWith("_ts"));
    const dl = el("dl", { class: "kv" }, entries.flatMap(([k, v]) => [el("dt", { text: k.replace(/_/g, " ") }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
    return [el("p", { class: "form-ok", text: "Done." }), dl];
  }

  function actionForm(a) {
    const id = (n) => `a-${a.integration}-${a.action}-${n}`;
    const status = el("div", { role: "status", id: id("status") });
    const error = el("p", { class: "form-error", role: "alert", hidden: true });
    const fields = Object.entries(a.params || {}).map(([name, spec]) => {
      const f = input(name, spec, id(name));
      return spec.type === "boolean" || spec.type === "bool"
        ? el("label", { for: id(name) }, f, spec.label || name)
        : el("div", {}, el("label", { for: id(name), text: spec.label || name }), f, spec.help ? el("p", { class: "hint", text: spec.help }) : null);
    });
    const button = el("button", { type: "submit", text: a.title || a.action });
    const form = el("form", { class: "card", "data-action": `${a.integration}/${a.action}`, novalidate: true },
      el("h3", { text: a.title || a.action }),
      a.description ? el("p", { class: "hint", text: a.description }) : null,
      ...fields, el("p", {}, button), error, status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const params = {};
      for (const [name, spec] of Object.entries(a.params || {})) {
        const v = value(form.querySelector(`[name="${name}"]`), spec);
        if (v !== undefined) params[name] = v;
      }
      button.disabled = true; error.hidden = true;
      const r = await api(`/api/devices/actions/${encodeURIComponent(a.integration)}/${encodeURIComponent(a.action)}`, { method: "POST", body: params });
      button.disabled = false;
      if (!r.ok) { error.textContent = (r.body && r.body.error) || "That did not work."; error.hidden = false; return; }
      const left = remaining(r.body.result);
      if (left > 0) countdown(status, left, a.action === "permit_join" ? "put the device in pairing mode now" : "open");
      else status.replaceChildren(...showResult(status, r.body.result));
      loadDevices();
    });
    const left = remaining(a.state);
    if (left > 0) countdown(status, left, "the network is open for pairing");
    return form;
  }

  async function loadDevices(withActions = false) {
    const r = await api("/api/devices");
    if (!r.ok) return;
    const now = r.body.now_ts;
    document.getElementById("devices").replaceChildren(...r.body.devices.map((d) => card(d, now)));
    if (withActions) {
      const actions = r.body.actions || [];
      document.getElementById("no-actions").hidden = actions.length > 0;
      document.getElementById("actions").replaceChildren(...actions.map(actionForm));
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const s = await site();
    tz = s.timezone; clockSpeed = s.clockSpeed || 1;
    await loadDevices(true);
    setInterval(() => loadDevices(false), 5000);
  });
})();
