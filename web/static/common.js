// Shared by every dashboard page: the menu, the logged-in user, API calls with the CSRF token, number and
// time formatting in the home's own time zone, and charts (uPlot, vendored in /static/vendor/).
"use strict";
const HEMS = (() => {
  const cookie = (name) => {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  };
  let csrf = "";

  // JSON API call; a lost session goes back to the login page. Resolves to {ok, status, body}.
  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf || cookie("hems_csrf");
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, body: { error: "The gateway did not answer. Is it switched on and on your network?" } };
    }
    if (resp.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      return { ok: false, status: 401, body: { error: "Please log in again." } };
    }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, body: data };
  }

  // the site's time zone and currency, from the gateway (not the browser's)
  let sitePromise = null;
  function site() {
    if (!sitePromise) {
      sitePromise = api("/api/status").then((r) => {
        const s = r.ok ? r.body : null;
        return {
          timezone: s ? s.gateway.timezone : undefined,
          currency: s ? s.tariff.currency : "USD",
          clockSpeed: s ? s.gateway.clock_speed : 1,
          mode: s ? s.gateway.mode : "",
          status: s,
        };
      });
    }
    return sitePromise;
  }

  let mePromise = null;
  function me() {
    if (!mePromise) {
      mePromise = api("/api/me").then((r) => {
        if (!r.ok) return null;
        csrf = r.body.csrf_token || "";
        document.body.dataset.role = r.body.role;
        const who = document.getElementById("who");
        if (who) who.textContent = `${r.body.username} (${r.body.role === "owner" ? "owner" : "installer"})`;
        return r.body;
      });
    }
    return mePromise;
  }

  // --- formatting -------------------------------------------------------------------------------------
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const kw = (w, digits = 1) => (isNum(w) ? (Math.abs(w) / 1000).toFixed(digits) + " kW" : "–");
  const kwh = (v, digits = 1) => (isNum(v) ? v.toFixed(digits) + " kWh" : "–");
  function money(v, currency = "USD", digits = 2) {
    if (!isNum(v)) return "–";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
    } catch (e) { return v.toFixed(digits) + " " + currency; }
  }
  const price = (v, currency) => (isNum(v) ? money(v, currency, 2) + "/kWh" : "–");
  function time(ts, tz, opts = { hour: "2-digit", minute: "2-digit" }) {
    if (!isNum(ts)) return "–";
    return new Date(ts * 1000).toLocaleString(undefined, Object.assign({ timeZone: tz }, opts));
  }
  const dateTime = (ts, tz) => time(ts, tz, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
  function ago(seconds) {
    if (!isNum(seconds)) return "never";
    if (seconds < 2) return "just now";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }
  const PERIODS = { off_peak: "Off-peak", super_off_peak: "Super off-peak", shoulder: "Mid-price", peak: "Peak", dynamic: "Utility price" };
  // the planner's and controller's reasons in the homeowner's words
  const plain = (r) => String(r || "").replace(/super_off_peak/g, "super off-peak").replace(/off_peak/g, "off-peak")
    .replace(/\bPV\b/g, "solar").replace(/\bEV\b/g, "car").replace(/^./, (c) => c.toUpperCase());
  // a cost below zero is money earned
  const costWords = (v, currency) => (!isNum(v) ? "–" : v < 0 ? `${money(-v, currency)} earned` : money(v, currency));
  const periodName = (p) => PERIODS[p] || String(p || "–").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function setText(key, text) { document.querySelectorAll(`[data-v="${key}"]`).forEach((e) => { e.textContent = text; }); }

  // --- charts ------------------------------------------------------------------------------------------
  const COLORS = { pv: "#a16207", grid: "#1d4ed8", battery: "#047857", home: "#374151", ev: "#6d28d9", hvac: "#be123c", water: "#0e7490", price: "#111827", export: "#15803d", muted: "#6b7280" };
  const charts = new Set();
  function chart(target, opts, data, tz) {
    const width = () => Math.max(280, target.clientWidth || 320);
    const height = opts.height || (window.innerWidth < 600 ? 240 : 300);
    const axisFont = "13px system-ui, sans-serif";
    const base = {
      width: width(), height,
      tzDate: tz ? (ts) => uPlot.tzDate(new Date(ts * 1000), tz) : undefined,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
    const o = Object.assign(base, opts);
    o.axes = (o.axes || [{}, {}]).map((a) => Object.assign({ stroke: "#111827", font: axisFont, labelFont: "bold 13px system-ui, sans-serif", grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#9ca3af" } }, a));
    target.replaceChildren();
    const u = new uPlot(o, data, target);
    u._hemsTarget = target;
    charts.add(u);
    return u;
  }
  function destroy(u) { if (u) { charts.delete(u); u.destroy(); } }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => charts.forEach((u) => u.setSize({ width: Math.max(280, u._hemsTarget.clientWidth), height: u.height })), 150);
  });
  const bars = (align) => (window.uPlot && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.42, 60], align }) : undefined);
  const stepped = () => (window.uPlot && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined);

  // --- page chrome -------------------------------------------------------------------------------------
  function chrome() {
    const page = location.pathname.replace(/\/$/, "") || "/";
    document.querySelectorAll("header.top nav a").forEach((a) => {
      const href = a.getAttribute("href");
      if (href === page || (href !== "/" && page.startsWith(href))) a.setAttribute("aria-current", "page");
    });
    const btn = document.querySelector(".menu-btn");
    const nav = document.getElementById("nav");
    if (btn && nav) btn.addEventListener("click", () => {
      const open = nav.classList.toggle("open");
      btn.setAttribute("aria-expanded", String(open));
    });
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", async () => {
      await api("/api/logout", { method: "POST" });
      location.assign("/login");
    });
    me();
  }
  document.addEventListener("DOMContentLoaded", chrome);

  return { api, site, me, plain, costWords, kw, kwh, money, price, time, dateTime, ago, periodName, el, setText, chart, destroy, bars, stepped, COLORS, isNum, cookie };
})();
