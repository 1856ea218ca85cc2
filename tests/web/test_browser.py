"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against a real gateway:
set up the owner with the setup code, log in, watch live values change, opt out of a DR event, change the
battery reserve (and see a wrong value refused) and see the plan change, and save screenshots at 375 px and
1280 px to var/screenshots/ (or $HEMS_SCREENSHOT_DIR, e.g. docs/screenshots for the README)."""

from __future__ import annotations

import asyncio
import math
import os
import re
from pathlib import Path

import pytest

from hems.dr import DREvent, DRState
from tests.conftest import OWNER_PASSWORD
from web.auth import setup_code_path

from .conftest import make_runtime, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# the README's screenshots are refreshed with HEMS_SCREENSHOT_DIR=docs/screenshots; by default a test run
# saves them under var/ so that it leaves the checkout unchanged
SHOTS = Path(
    os.environ.get("HEMS_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "var" / "screenshots"
)
TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (`make test` installs it)"
    ),
    pytest.mark.timeout(240),
]


async def shoot(page, name: str) -> None:
    """The page at 1280 px and at 375 px wide (full length), then back to the desktop width."""
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    for width in (1280, 375):
        await page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
        await page.wait_for_timeout(400)  # charts follow the width after a short debounce
        await page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})


async def test_homeowner_journey_in_chromium(tmp_path):
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    rt = make_runtime(tmp_path, owner=False)
    await rt.start()
    errors: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # first start: every page leads to the setup page, which wants the code from the console
            await page.goto(rt.url + "/")
            assert page.url.endswith("/setup")
            await expect(page.locator("h1")).to_have_text("Set up your gateway")
            await page.fill("#setup_code", "WRONG-CODE1")
            await page.fill("#password", OWNER_PASSWORD)
            await page.click("button[type=submit]")
            await expect(page.locator("#setup_code-error")).to_contain_text("setup code is wrong")
            await page.fill("#setup_code", setup_code_path(tmp_path).read_text().strip().lower())
            await page.click("button[type=submit]")
            await page.wait_for_url(rt.url + "/")

            # the live picture changes as readings arrive over the WebSocket
            await expect(page.locator("#conn")).to_have_text("● Live")
            pv = page.locator('[data-v="pv"]')
            await expect(pv).to_have_text(re.compile(r"\d+\.\d kW"))
            first = await page.locator("#flow-words").inner_text()
            clock = await page.locator('[data-v="clock"]').inner_text()
            await page.wait_for_function(
                "([w, c]) => document.querySelector('#flow-words').textContent !== w"
                " && document.querySelector('[data-v=\"clock\"]').textContent !== c",
                arg=[first, clock],
            )

            # a utility event: the banner appears; opting out needs a second tap and tells the utility
            now = rt.clock.now()
            start = math.ceil(now / 900) * 900
            await rt.dr.receive(
                DREvent(
                    source="openadr", event_id="evening-peak", start_ts=start, duration_s=4 * 3600, level=2
                )
            )
            await wait_until(
                lambda: rt.dr.get("openadr:evening-peak").state is DRState.ACTIVE, 30, "event start"
            )
            await page.reload()
            banner = page.locator("#dr-banner")
            await expect(banner).to_be_visible()
            await expect(page.locator("#dr-text")).to_contain_text("use less power now")
            await expect(page.locator('[data-v="t-pv"]')).not_to_have_text("–")
            await shoot(page, "overview")
            await page.click("#dr-optout")
            await page.click("#dr-optout-yes")
            await expect(page.locator("#dr-text")).to_contain_text("You opted out")
            assert rt.dr.get("openadr:evening-peak").state is DRState.OPTED_OUT

            # the event's page: the detail and what happened before the opt-out
            await page.goto(rt.url + "/dr?event=" + "openadr%3Aevening-peak")
            await expect(page.locator("#detail")).to_contain_text("You opted out")
            await expect(page.locator("#events tbody tr")).to_have_count(1)
            await shoot(page, "events")

            # the plan, then the reserve: a wrong value is refused with the reason, a good one re-plans and the
            # plan keeps the battery above the new reserve
            await page.goto(rt.url + "/plan")
            summary = page.locator("#plan-summary")
            await expect(summary).to_contain_text("Expected cost")
            await expect(page.locator("#why tbody tr").first).to_be_visible()
            lowest_before = float(await summary.get_attribute("data-lowest-soc"))
            reserve = min(95, int(lowest_before) + 10)
            await shoot(page, "plan")
            await page.goto(rt.url + "/settings")
            await expect(page.locator("#battery_reserve_pct")).to_have_value("20")
            await page.fill("#battery_reserve_pct", "150")
            await page.click("#save")
            error = page.locator('[data-error-for="battery_reserve_pct"]')
            await expect(error).to_contain_text("must be between 5 and 100 %, got 150")
            await expect(page.locator("#battery_reserve_pct")).to_have_attribute("aria-invalid", "true")
            assert rt.settings.battery_reserve_pct == 20  # nothing changed
            await page.fill("#battery_reserve_pct", str(reserve))
            await page.click("#save")
            await expect(page.locator("#form-ok")).to_contain_text("Saved")
            await expect(error).to_be_hidden()
            assert rt.settings.battery_reserve_pct == reserve
            await shoot(page, "settings")
            change = f"battery reserve 20 → {reserve} %"
            plans = await wait_until(
                lambda: [e for e in rt.store.events(kind="plan") if change in e["data"]["reason"]],
                30,
                "a re-plan",
            )
            await page.goto(rt.url + "/plan")
            await expect(summary).to_contain_text(f"your reserve: {reserve} %")
            assert await summary.get_attribute("data-reserve") == str(reserve)
            lowest = float(await summary.get_attribute("data-lowest-soc"))
            first = float(await summary.get_attribute("data-first-soc"))
            assert lowest >= min(reserve, first) - 0.5 and lowest > lowest_before, (lowest, first, plans)

            # the owner adds an installer on the settings page; a short password is refused with the reason
            await page.goto(rt.url + "/settings")
            await page.fill("#new_username", "installer")
            await page.fill("#new_user_password", "short")
            await page.click("#user-form button[type=submit]")
            await expect(page.locator("#user-error")).to_contain_text("at least 10")
            await page.fill("#new_user_password", "wiring-1234")
            await page.click("#user-form button[type=submit]")
            await expect(page.locator("#user-ok")).to_contain_text("installer can now log in")
            await expect(page.locator("#users tbody tr")).to_have_count(2)
            assert [u["username"] for u in rt.accounts.users()] == ["installer", "owner"]

            # devices and history (the history now has a few simulated hours)
            await page.goto(rt.url + "/devices")
            await expect(page.locator("[data-device]")).to_have_count(6)
            await expect(page.locator('[data-device="grid-meter"] .pill')).to_have_text("Working")
            await shoot(page, "devices")
            await page.goto(rt.url + "/history")
            await expect(page.locator('[data-v="h-pv"]')).not_to_have_text("–")
            csv = page.locator("#csv")
            assert (await csv.get_attribute("href")).startswith("/api/history.csv?range=day")
            await shoot(page, "history")

            # the menu works on a phone
            await page.set_viewport_size({"width": 375, "height": 812})
            nav = page.locator("#nav")
            await expect(nav).to_be_hidden()
            await page.click(".menu-btn")
            await expect(nav).to_be_visible()
            await page.click("#nav >> text=Devices")
            await page.wait_for_url(rt.url + "/devices")

            # logging out ends the session
            await page.click(".menu-btn")
            await page.click("#logout")
            await page.wait_for_url(rt.url + "/login")
            await page.goto(rt.url + "/history")
            assert "/login" in page.url
            await browser.close()
    finally:
        await rt.stop()
    assert errors == [], errors
