// The "Utility events" page: every DR event from /api/dr, and one event's detail from /api/dr/{key} with its
// verification report (the home's usual use — the baseline — against what the meter measured, and what was shed).
"use strict";
(() => {
  const { api, site, kw, kwh, time, dateTime, el, chart, destroy, stepped, COLORS, isNum } = HEMS;
  const STATES = { pending: "Coming up", active: "On now", completed: "Done", cancelled: "Cancelled by the utility", opted_out: "You opted out", superseded: "Replaced" };
  const SOURCES = { openadr: "Utility (OpenADR)", sep2: "Utility (IEEE 2030.5)", zigbee: "Smart meter", mqtt: "Aggregator" };
  let tz, detailChart = null;

  const when = (e) => `${dateTime(e.effective_start_ts, tz)} – ${isNum(e.end_ts) ? time(e.end_ts, tz) : "until further notice"}`;
  const what = (e) => (isNum(e.level) ? `Use less power: ${e.objective}` : e.objective.charAt(0).toUpperCase() + e.objective.slice(1));
  const reduced = (e) => (e.report && isNum(e.report.shed_wh) ? kwh(e.report.shed_wh / 1000, 2) : "–");
  const pill = (state) => el("span", { class: "pill " + state, text: STATES[state] || state });

  async function list() {
    const r = await api("/api/dr");
    if (!r.ok) return;
    const events = r.body.events.slice().reverse();
    document.getElementById("no-events").hidden = events.length > 0;
    document.querySelector("#events tbody").replaceChildren(...events.map((e) => el("tr", {},
      el("td", { text: when(e) }),
      el("td", { text: what(e) }),
      el("td", { text: SOURCES[e.source] || e.source }),
      el("td", {}, pill(e.state)),
      el("td", { class: "n", text: reduced(e) }),
      el("td", {}, el("a", { href: "/dr?event=" + encodeURIComponent(e.key), text: "Details" })))));
  }

  async function detail(key) {
    const box = document.getElementById("detail");
    const r = await api("/api/dr/" + encodeURIComponent(key));
    box.hidden = false;
    if (!r.ok) { box.replaceChildren(el("p", { class: "form-error", text: (r.body && r.body.error) || "Not found." })); return; }
    const { event: e, summary, report, report_provisional: provisional, versions } = r.body;
    const parts = [
      el("div", { class: "chart-title" }, el("h2", { text: what(e) }), pill(e.state)),
      el("p", { text: `${when(e)} · from ${SOURCES[e.source] || e.source} · event ${e.event_id}` + (e.test_event ? " · a test event" : "") }),
    ];
    if (e.reason) parts.push(el("p", { class: "muted", text: e.reason.charAt(0).toUpperCase() + e.reason.slice(1) }));
    if (summary.can_opt_out) {
      const msg = el("p", { role: "status" });
      const btn = el("button", { type: "button", class: "danger", id: "detail-optout", text: "Opt out of this event", onclick: async () => {
        btn.disabled = true;
        const o = await api(`/api/dr/${encodeURIComponent(key)}/opt-out`, { method: "POST", body: { reason: "opted out on the dashboard" } });
        msg.textContent = o.ok ? "You opted out. The utility has been told." : (o.body && o.body.error) || "Opting out did not work.";
        if (o.ok) { list(); setTimeout(() => detail(key), 500); } else btn.disabled = false;
      } });
      parts.push(el("p", {}, btn), msg);
    }
    parts.push(el("h3", { text: provisional ? "How it is going so far" : "Result" }));
    if (!report) {
      parts.push(el("p", { class: "muted", text: e.state === "pending" ? "The result is worked out after the event." : "No result for this event (it did not run)." }));
    } else if (report.error) {
      parts.push(el("p", { class: "muted", text: `No result: ${report.error}.` }));
    } else {
      const stats = el("dl", { class: "stats" },
        el("div", {}, el("dt", { text: "Reduced" }), el("dd", { text: kwh(report.shed_wh / 1000, 2) })),
        el("div", {}, el("dt", { text: "On average" }), el("dd", { text: isNum(report.mean_shed_w) ? kw(report.mean_shed_w, 2) : "–" })),
        el("div", {}, el("dt", { text: "Asked for" }), el("dd", { text: isNum(report.requested_shed_w) ? kw(report.requested_shed_w, 2) : "—" })));
      parts.push(stats);
      parts.push(el("p", { class: "muted", text: `Compared with the home's usual use at these times (${report.method}: the average of ${report.days ? report.days.length : 10} similar days before the event). Grid power, 15-minute averages.` }));
      const target = el("div", { class: "chart" });
      parts.push(target);
      const rows = report.intervals || [];
      parts.push(el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", { text: "From" }), el("th", { class: "n", text: "Usual" }), el("th", { class: "n", text: "Measured" }), el("th", { class: "n", text: "Reduced by" }))),
        el("tbody", {}, rows.map((iv) => el("tr", {},
          el("td", { text: time(iv.ts, tz) }),
          el("td", { class: "n", text: kw(iv.baseline_w, 2) }),
          el("td", { class: "n", text: isNum(iv.metered_w) ? kw(iv.metered_w, 2) : "–" }),
          el("td", { class: "n", text: isNum(iv.shed_w) ? (iv.shed_w < 0 ? "−" : "") + kw(iv.shed_w, 2) : "–" })))))));
      box.replaceChildren(...parts, el("p", { class: "muted", text: `${versions.length} version(s) received from the source.` }));
      destroy(detailChart);
      if (rows.length) {
        const xs = rows.map((iv) => iv.ts); xs.push(rows[rows.length - 1].ts + 900);
        const ext = (k) => { const a = rows.map((iv) => (isNum(iv[k]) ? iv[k] / 1000 : null)); a.push(a[a.length - 1]); return a; };
        const v = (u, x) => (isNum(x) ? x.toFixed(2) + " kW" : "–");
        detailChart = chart(target, {
          scales: { x: { time: true } },
          series: [{}, { label: "Usual use (baseline)", stroke: COLORS.muted, width: 2, dash: [6, 4], paths: stepped(), value: v },
            { label: "Measured", stroke: COLORS.grid, width: 2.5, paths: stepped(), value: v },
            { label: "Reduced by", stroke: COLORS.battery, width: 2, paths: stepped(), value: v }],
          axes: [{}, { values: (u, vals) => vals.map((x) => x + " kW"), size: 60 }],
          height: 240,
        }, [xs, ext("baseline_w"), ext("metered_w"), ext("shed_w")], tz);
      }
      return;
    }
    box.replaceChildren(...parts);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    tz = (await site()).timezone;
    await list();
    const key = new URLSearchParams(location.search).get("event");
    if (key) detail(key);
    setInterval(list, 30000);
  });
})();
