// The login and setup pages (served by web/auth.py): send the form as JSON, show what was wrong, go on.
"use strict";
(function () {
  const form = document.querySelector("form.auth-form");
  if (!form) return;
  const errorBox = document.getElementById("form-error");
  const url = form.id === "setup-form" ? "/api/setup" : "/api/login";

  function showErrors(body) {
    form.querySelectorAll(".field-error").forEach((p) => { p.hidden = true; p.textContent = ""; });
    form.querySelectorAll("input").forEach((i) => i.removeAttribute("aria-invalid"));
    const fields = (body && body.errors) || {};
    let placed = false;
    for (const [name, message] of Object.entries(fields)) {
      const p = document.getElementById(name + "-error");
      const input = document.getElementById(name);
      if (p && input) {
        p.textContent = message; p.hidden = false; input.setAttribute("aria-invalid", "true");
        placed = true;
      }
    }
    errorBox.textContent = (body && body.error) || "Something went wrong; try again.";
    errorBox.hidden = placed && Object.keys(fields).length > 0 && !body.retry_after_s;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const resp = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(data),
        credentials: "same-origin",
      });
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      if (resp.ok) {
        const next = new URLSearchParams(location.search).get("next");
        location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/");
        return;
      }
      showErrors(body);
    } catch (e) {
      showErrors({ error: "The gateway did not answer; check that it is on and try again." });
    } finally {
      button.disabled = false;
    }
  });
})();
