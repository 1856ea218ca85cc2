// The "Settings" page: the homeowner's settings from /api/settings; a save sends only what changed (PATCH) and
// shows the gateway's message next to each field it refused.
"use strict";
(() => {
  const { api, me, el } = HEMS;
  const NUMBERS = ["battery_reserve_pct", "ev_target_soc_pct", "comfort_min_c", "comfort_max_c"];
  const DAYS = { weekdays: "Weekdays", weekends: "Weekends", all: "Every day" };
  let loaded = null;

  function periodRow(p = {}) {
    const cell = (child) => el("td", { "data-label": child.getAttribute("aria-label") || "" }, child);
    const days = el("select", { "aria-label": "Days" }, Object.entries(DAYS).map(([v, t]) => el("option", { value: v, text: t, selected: (p.days || "all") === v })));
    const row = el("tr", { "data-months": p.months ? JSON.stringify(p.months) : "" },
      cell(el("input", { type: "text", value: p.name || "", "aria-label": "Period name", "data-k": "name" })),
      cell(days),
      cell(el("input", { type: "time", value: p.start || "00:00", "aria-label": "From", "data-k": "start" })),
      cell(el("input", { type: "time", value: p.end === "24:00" ? "00:00" : p.end || "00:00", "aria-label": "Until (00:00 = midnight)", "data-k": "end" })),
      cell(el("input", { type: "number", step: "0.001", value: p.import_price_per_kwh ?? "", "aria-label": "Buy price", "data-k": "import_price_per_kwh", inputmode: "decimal" })),
      cell(el("input", { type: "number", step: "0.001", value: p.export_price_per_kwh ?? "", "aria-label": "Sell price", "data-k": "export_price_per_kwh", inputmode: "decimal" })),
      el("td", {}, el("button", { type: "button", class: "secondary", text: "Remove", onclick: () => row.remove() })));
    days.dataset.k = "days";
    return row;
  }

  function fill(s) {
    loaded = s;
    for (const k of NUMBERS) document.getElementById(k).value = s[k];
    document.getElementById("ev_departure").value = s.ev_departure;
    document.getElementById("export_limit_w").value = s.export_limit_w ?? "";
    const t = s.tariff;
    document.getElementById("tariff-name").value = t.name || "";
    document.getElementById("tariff-currency").value = t.currency || "USD";
    document.getElementById("tariff-export").value = t.export_price_per_kwh;
    document.querySelector("#periods tbody").replaceChildren(...t.periods.map(periodRow));
    const c = s.cloud || {};
    document.getElementById("mqtt_enabled").checked = !!c.mqtt_enabled;
    document.getElementById("mqtt_host").value = c.mqtt_host || "";
    document.getElementById("mqtt_port").value = c.mqtt_port ?? "";
    document.getElementById("mqtt_username").value = c.mqtt_username || "";
    document.getElementById("mqtt_tls").checked = c.mqtt_tls !== false;
    // the password is never read back: the field only replaces it
    const pw = document.getElementById("mqtt_password");
    pw.value = "";
    pw.placeholder = c.mqtt_password_set ? "saved (type to replace)" : "none";
  }

  const num = (id) => { const v = document.getElementById(id).value; return v === "" ? null : Number(v); };

  function read() {
    const out = {};
    for (const k of NUMBERS) out[k] = num(k);
    out.ev_departure = document.getElementById("ev_departure").value;
    out.export_limit_w = num("export_limit_w");
    const periods = [...document.querySelectorAll("#periods tbody tr")].map((tr) => {
      const get = (k) => tr.querySelector(`[data-k="${k}"]`).value;
      const p = { name: get("name"), days: get("days"), start: get("start"), end: get("end") === "00:00" ? "24:00" : get("end") };
      p.import_price_per_kwh = get("import_price_per_kwh") === "" ? null : Number(get("import_price_per_kwh"));
      if (get("export_price_per_kwh") !== "") p.export_price_per_kwh = Number(get("export_price_per_kwh"));
      if (tr.dataset.months) p.months = JSON.parse(tr.dataset.months);
      return p;
    });
    const t = Object.assign({}, loaded.tariff, {
      name: document.getElementById("tariff-name").value,
      currency: document.getElementById("tariff-currency").value.toUpperCase(),
      export_price_per_kwh: num("tariff-export"),
      periods,
    });
    out.tariff = t;
    out.cloud = {
      mqtt_enabled: document.getElementById("mqtt_enabled").checked,
      mqtt_host: document.getElementById("mqtt_host").value.trim(),
      mqtt_port: num("mqtt_port"),
      mqtt_username: document.getElementById("mqtt_username").value,
      mqtt_tls: document.getElementById("mqtt_tls").checked,
    };
    const password = document.getElementById("mqtt_password").value;
    if (password) out.cloud.mqtt_password = password;
    return out;
  }

  // a tariff period that wraps past midnight ends at 24:00 in the API; the form shows midnight as 00:00
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  function changes(now) {
    const patch = {};
    for (const [k, v] of Object.entries(now)) {
      if (k === "cloud") {
        const { mqtt_password_set: _ignored, ...was } = loaded.cloud || {};
        if (!same(Object.keys(v).sort().map((x) => v[x]), Object.keys(v).sort().map((x) => was[x]))) patch.cloud = v;
      } else if (k === "tariff") {
        const norm = (t) => JSON.stringify({ ...t, periods: t.periods.map((p) => ({ ...p, end: p.end === "00:00" ? "24:00" : p.end })) });
        if (norm(v) !== norm(loaded.tariff)) patch.tariff = v;
      } else if (!same(v, loaded[k])) patch[k] = v;
    }
    return patch;
  }

  function clearErrors() {
    document.querySelectorAll("[data-error-for]").forEach((p) => { p.hidden = true; p.textContent = ""; });
    document.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
    document.querySelectorAll("#periods tr.bad-row").forEach((r) => r.classList.remove("bad-row"));
  }

  function showErrors(body) {
    const box = document.getElementById("form-error");
    box.textContent = (body && body.error) || "The settings were not saved.";
    box.hidden = false;
    for (const [field, message] of Object.entries((body && body.errors) || {})) {
      const p = document.querySelector(`[data-error-for="${field}"]`);
      if (p) { p.textContent = message; p.hidden = false; }
      const input = document.getElementById(field);
      if (input) input.setAttribute("aria-invalid", "true");
      const m = field === "tariff" && /periods\[(\d+)\]\.?(\w+)?/.exec(message);
      if (m) {
        const row = document.querySelectorAll("#periods tbody tr")[Number(m[1])];
        const cell = row && (row.querySelector(`[data-k="${m[2]}"]`) || row.querySelector("input"));
        if (cell) cell.setAttribute("aria-invalid", "true");
      }
    }
    const first = document.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const form = document.getElementById("settings-form");
    const [who, r] = await Promise.all([me(), api("/api/settings")]);
    if (!r.ok) { showErrors(r.body); return; }
    fill(r.body);
    if (who && who.role !== "owner") {
      document.getElementById("readonly-note").hidden = false;
      form.querySelectorAll("input, select, button").forEach((i) => { i.disabled = true; });
    }
    document.getElementById("add-period").addEventListener("click", () => document.querySelector("#periods tbody").append(periodRow({ days: "all" })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors();
      const ok = document.getElementById("form-ok");
      ok.hidden = true; document.getElementById("form-error").hidden = true;
      const patch = changes(read());
      if (!Object.keys(patch).length) { ok.textContent = "Nothing changed."; ok.hidden = false; return; }
      const save = document.getElementById("save");
      save.disabled = true;
      const resp = await api("/api/settings", { method: "PATCH", body: patch });
      save.disabled = false;
      if (!resp.ok) { showErrors(resp.body); return; }
      fill(resp.body);
      ok.textContent = "Saved. The gateway is making a new plan with these settings.";
      ok.hidden = false;
    });
  });
})();

// Accounts: anyone changes their own password; the owner adds and removes installers.
(() => {
  const { api, me, el } = HEMS;

  function say(prefix, r, okText) {
    const err = document.getElementById(prefix + "-error");
    const ok = document.getElementById(prefix + "-ok");
    err.hidden = ok.hidden = true;
    if (r.ok) { ok.textContent = okText; ok.hidden = false; return true; }
    const fields = (r.body && r.body.errors) || {};
    err.textContent = Object.values(fields)[0] || (r.body && r.body.error) || "Not done; try again.";
    err.hidden = false;
    return false;
  }

  async function listUsers(self) {
    const r = await api("/api/users");
    if (!r.ok) return;
    const body = document.querySelector("#users tbody");
    body.replaceChildren(...r.body.users.map((u) => el("tr", {},
      el("td", { text: u.username }),
      el("td", { text: u.role === "owner" ? "Owner" : "Installer" }),
      el("td", {}, u.username === self ? el("span", { class: "muted", text: "you" }) : el("button", {
        type: "button", class: "secondary", text: "Remove",
        onclick: async () => {
          if (!confirm(`Remove ${u.username}? They can no longer log in.`)) return;
          const d = await api("/api/users/" + encodeURIComponent(u.username), { method: "DELETE" });
          if (say("user", d, `${u.username} removed.`)) listUsers(self);
        },
      })))));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    const who = await me();
    if (!who) return;
    if (sessionStorage.getItem("hems-password-changed")) {
      sessionStorage.removeItem("hems-password-changed");
      say("password", { ok: true }, "Password changed. Other devices logged in as you were logged out.");
    }
    document.getElementById("password-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await api("/api/me/password", {
        method: "POST",
        body: { current_password: document.getElementById("current_password").value, new_password: document.getElementById("new_password").value },
      });
      if (say("password", r, "Password changed.")) {
        sessionStorage.setItem("hems-password-changed", "1");
        location.reload(); // the new session comes with a new CSRF token
      }
    });
    if (who.role !== "owner") return;
    document.getElementById("owner-accounts").hidden = false;
    await listUsers(who.username);
    document.getElementById("user-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const username = document.getElementById("new_username").value.trim();
      const r = await api("/api/users", {
        method: "POST",
        body: { username, password: document.getElementById("new_user_password").value, role: "installer" },
      });
      if (say("user", r, `${username} can now log in as an installer.`)) { ev.target.reset(); listUsers(who.username); }
    });
  });
})();
