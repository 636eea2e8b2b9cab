"""The whole web console end to end in headless Chromium against the real app (a real HTTP server on a free
port) and a real Redis (the static files alone: test_console_static.py).

The browser tests need Debian's ``chromium`` at /usr/bin/chromium and the ``playwright`` package (only its
driver: ``playwright install`` is never needed); without either they are skipped with a message saying so.
Every view, form and dialog is checked with axe-core (the copy that ships in the ``axe-playwright-python``
package, evaluated in the page: nothing is fetched), which must find no violation.
``TAILOR_UPDATE_SCREENSHOT=1`` also writes the screenshot of the README (docs/console.png).
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path

import pytest
import requests

from tests.console_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    Published,
    active_version,
    assert_accessible,
    assert_chart_pixels,
    impressions_counted,
    marketing_get,
    painted_bars,
    require_axe,
    require_browser,
    seed_marketing_data,
)
from tests.service_helpers import KEYS

pytest_plugins = ["tests.service_helpers", "tests.console_support"]

SCREENSHOT = ROOT / "docs" / "console.png"


def test_console_end_to_end_in_chromium(live_server: str, published: Published, tmp_path: Path) -> None:
    sync_api = require_browser()
    require_axe()
    started = time.monotonic()
    seed_marketing_data(live_server, published)
    requested: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            expect = sync_api.expect

            page.goto(f"{live_server}/console")
            assert_accessible(page, "the key form")
            # A read key is refused up front: the console needs scope marketing.
            page.get_by_label("API key", exact=True).fill(KEYS["read"])
            page.get_by_role("button", name="Use this key").click()
            expect(page.locator("#key-error")).to_contain_text("marketing")
            assert_accessible(page, "the key form with its error")

            page.get_by_label("API key", exact=True).fill(KEYS["marketing"])
            page.keyboard.press("Enter")  # the form works from the keyboard
            expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
            assert page.evaluate("sessionStorage.getItem('tailor.console.apiKey')") == KEYS["marketing"]

            # Customer lookup: profile, recommendations with reasons, then a preview of promotions and messages.
            page.get_by_label("Customer ID").fill(published.customer)
            page.get_by_role("button", name="Look up").click()
            recommendations = page.get_by_role("table", name="Recommended items with reasons")
            expect(recommendations.locator("tbody tr")).to_have_count(10)
            reasons = recommendations.locator("tbody tr td:last-child").all_inner_texts()
            assert any(r != "—" for r in reasons), reasons
            expect(page.locator(".badge.stage")).to_have_text(re.compile(r"repeat|first-time|lapsed|new"))
            counted = impressions_counted(live_server)
            assert counted[0] > 0 and counted[1] > 0, counted
            page.get_by_role("button", name="Preview promotions and messages").click()
            expect(page.locator(".serve-result")).to_contain_text("homepage-banner")
            expect(page.locator(".serve-result")).to_contain_text("15% off")  # spring-sale targets the top items
            assert impressions_counted(live_server) == counted, "a preview counted an impression"
            # prices and counts for people: grouped digits, two decimals for prices
            assert all(re.fullmatch(r"—|\d{1,3}(,\d{3})*\.\d\d", price) for price in
                       recommendations.locator('tbody td[data-label="Price"]').all_inner_texts())
            assert_accessible(page, "the customer view")
            page.screenshot(path=str(tmp_path / "customer.png"), full_page=True)

            # Promotions and message slots: charts with painted bars, and pixels to prove it.
            page.get_by_role("link", name="Promotions").click()
            expect(page.locator("#promotions-result")).to_contain_text("Spring sale")
            assert painted_bars(page, "#promotions-result") >= 8  # 2 promotions x (3 counts + 2 rates), minus zeros
            chart = page.locator("#promotions-result figure.chart").first
            assert_chart_pixels(chart.screenshot(path=str(tmp_path / "promotions-chart.png")))
            # ended and scheduled promotions are shown as such, not as "active"
            ended = page.locator("#promotions-result tr", has_text="winter-sale")  # the id: the table of all
            expect(ended).to_contain_text("ended")
            expect(ended).not_to_contain_text("active")
            expect(page.locator("#promotions-result tr", has_text="summer-sale")).to_contain_text("scheduled")
            # a promotion without impressions has no rate and no interval (not "n/a [0% – 100%]")
            page.locator("#promotions-result details summary").nth(1).click()
            rates = page.locator("#promotions-result details").nth(1).locator("tr", has_text="Winter sale")
            expect(rates).to_contain_text("n/a")
            expect(rates).not_to_contain_text("[")
            assert_accessible(page, "the promotions view")
            page.screenshot(path=str(tmp_path / "promotions.png"), full_page=True)

            page.get_by_role("link", name="Messages").click()
            expect(page.locator("#messages-result h2")).to_contain_text("homepage-banner")
            assert painted_bars(page, "#messages-result") >= 9
            assert_chart_pixels(page.locator("#messages-result figure.chart").first.screenshot())
            assert_accessible(page, "the messages view")
            page.screenshot(path=str(tmp_path / "messages.png"), full_page=True)

            # Models: metrics charts; a marketing key may not activate (clear 403 message) ...
            page.get_by_role("link", name="Models").click()
            expect(page.locator("#active-version")).to_have_text(published.newer)
            assert painted_bars(page, "#models-result") >= 16  # 2 versions x 2 views x 2 series x 4 metrics
            assert_chart_pixels(page.locator("#models-result figure.chart").first.screenshot())
            assert_accessible(page, "the models view")
            page.locator(f'[data-activate="{published.older}"]').click()
            page.get_by_role("dialog").get_by_role("button", name="Activate").click()
            expect(page.get_by_role("alert")).to_contain_text("needs scope “admin”")

            # ... an admin key may: activate the older version, then roll back to the newer one.
            page.get_by_role("button", name="Change key").click()
            page.get_by_label("API key", exact=True).fill(KEYS["admin"])
            page.get_by_role("button", name="Use this key").click()
            expect(page.locator("#active-version")).to_have_text(published.newer)
            # Activating asks first: cancel changes nothing, confirm activates.
            activate = page.locator(f'[data-activate="{published.older}"]')
            activate.click()
            dialog = page.get_by_role("dialog", name=f"Activate version {published.older}?")
            expect(dialog).to_be_visible()
            assert_accessible(page, "the activation dialog")
            dialog.get_by_role("button", name="Cancel").click()
            expect(dialog).to_have_count(0)
            expect(activate).to_be_focused()  # the focus goes back where it was
            time.sleep(0.3)
            assert active_version(live_server) == published.newer
            expect(page.locator("#active-version")).to_have_text(published.newer)
            activate.click()
            page.keyboard.press("Escape")  # Escape cancels too
            expect(dialog).to_have_count(0)
            assert active_version(live_server) == published.newer
            activate.click()
            dialog.get_by_role("button", name="Activate").click()
            expect(page.locator("#active-version")).to_have_text(published.older)
            expect(page.locator("#flash")).to_contain_text(f"Version {published.older} is now active")
            assert active_version(live_server) == published.older
            page.get_by_role("button", name="Roll back to the previous version").click()
            rollback = page.get_by_role("dialog", name="Roll back the model?")
            rollback.get_by_role("button", name="Cancel").click()
            time.sleep(0.3)
            assert active_version(live_server) == published.older
            page.get_by_role("button", name="Roll back to the previous version").click()
            rollback.get_by_role("button", name="Roll back").click()
            expect(page.locator("#active-version")).to_have_text(published.newer)
            assert active_version(live_server) == published.newer
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(tmp_path / "models.png"), full_page=True)
            if os.environ.get("TAILOR_UPDATE_SCREENSHOT") == "1":
                page.get_by_role("link", name="Promotions").click()
                expect(page.locator("#promotions-result")).to_contain_text("Spring sale")
                page.screenshot(path=str(SCREENSHOT), full_page=True)

            # Narrow screens: the layout reflows instead of scrolling sideways, and the recommendations table
            # fits (each row a small card) instead of scrolling inside its box.
            page.set_viewport_size({"width": 390, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.get_by_role("link", name="Customer").click()
            expect(recommendations.locator("tbody tr")).to_have_count(10)
            overflow = recommendations.evaluate("""(table) => ({table: table.scrollWidth,
                box: table.closest(".table-wrap").clientWidth, page: document.documentElement.scrollWidth})""")
            assert overflow["table"] <= overflow["box"] and overflow["page"] <= 390, overflow
            assert recommendations.locator("tbody tr").first.bounding_box()["width"] <= 390
            assert_accessible(page, "the customer view at 390 px")
            page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
        finally:
            browser.close()

    assert not page_errors, page_errors
    unexpected = [m for m in console_errors if not re.search(r"status of 40[13]", m)]
    assert not unexpected, unexpected
    assert requested and all(url.startswith(live_server) or url.startswith("data:") for url in requested), \
        [u for u in requested if not u.startswith(live_server)]
    print(f"console end-to-end test: {time.monotonic() - started:.1f}s")


@pytest.mark.slow
def test_console_manages_promotions_slots_and_audiences(live_server: str, published: Published,
                                                        tmp_path: Path) -> None:
    sync_api = require_browser()
    require_axe()
    seed_marketing_data(live_server, published)
    page_errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            expect = sync_api.expect
            page.goto(f"{live_server}/console#promotions")
            page.get_by_label("API key", exact=True).fill(KEYS["marketing"])
            page.keyboard.press("Enter")
            expect(page.locator("#promotions-result")).to_contain_text("Spring sale")

            # Create a promotion with an invalid field: the API's 400 is shown at that field and in a summary.
            page.get_by_role("button", name="New promotion").click()
            form = page.get_by_role("form", name="New promotion")
            form.get_by_label("Promotion ID").fill("autumn-sale")
            form.get_by_label("Name").fill("Autumn sale")
            form.get_by_label("Offer text").fill("20% off")
            percent = form.get_by_label("Percent off")
            percent.fill("150")
            form.get_by_label("Items").fill(", ".join(published.items[10:12]))
            form.get_by_label("Status").select_option("active")
            assert_accessible(page, "the new promotion form")
            form.get_by_role("button", name="Save promotion").click()
            expect(percent).to_have_attribute("aria-invalid", "true")
            error_id = percent.get_attribute("aria-describedby").split()[-1]
            expect(page.locator(f"#{error_id}")).to_contain_text("100")
            summary = form.locator(".error-summary")
            expect(summary).to_be_focused()
            expect(summary).to_contain_text("Percent off")
            assert_accessible(page, "the promotion form with its errors")
            assert requests.get(f"{live_server}/v1/promotions/autumn-sale", timeout=10,
                                headers={"Authorization": f"Bearer {KEYS['marketing']}"}).status_code == 404
            summary.get_by_role("link").first.click()
            expect(percent).to_be_focused()
            percent.fill("20")
            form.get_by_role("button", name="Save promotion").click()
            expect(page.locator("#flash")).to_contain_text("Autumn sale")
            row = page.locator("#promotions-result tr", has_text="autumn-sale")
            expect(row).to_contain_text("active")
            saved = marketing_get(live_server, "/v1/promotions/autumn-sale")
            assert saved["offer"]["percent_off"] == 20 and saved["items"] == published.items[10:12], saved
            assert saved["cap"] is None and not any(saved["eligibility"].values()), saved  # empty fields: no rule
            expect(row).to_contain_text("For everyone")

            # Edit who sees it and how often: a cap without its days is shown at that field, then saved.
            row.get_by_role("button", name="Edit Autumn sale").click()
            form = page.get_by_role("form", name="Edit promotion “Autumn sale”")
            stages = form.get_by_role("group", name="Journey stages")
            stages.get_by_label("repeat").check()
            stages.get_by_label("lapsed").check()
            form.get_by_label("Countries").fill("United Kingdom, EIRE")
            form.get_by_label("Minimum orders").fill("2")
            form.get_by_label("Cap: impressions").fill("3")
            assert_accessible(page, "the promotion form with eligibility and cap")
            form.get_by_role("button", name="Save promotion").click()
            days = form.get_by_label("Cap: days")
            expect(days).to_have_attribute("aria-invalid", "true")
            assert_accessible(page, "the eligibility fields with an error")
            days.fill("7")
            form.get_by_role("button", name="Save promotion").click()
            expect(page.locator("#flash")).to_contain_text("Autumn sale")
            expect(row).to_contain_text("repeat, lapsed · United Kingdom, EIRE · ≥ 2 orders · 3 per 7 days")
            saved = marketing_get(live_server, "/v1/promotions/autumn-sale")
            assert saved["eligibility"]["journey_stages"] == ["repeat", "lapsed"], saved
            assert saved["eligibility"]["countries"] == ["United Kingdom", "EIRE"], saved
            assert saved["eligibility"]["min_orders"] == 2 and saved["cap"] == {"impressions": 3, "days": 7}, saved
            assert saved["offer"]["percent_off"] == 20, saved  # what the edit did not touch is kept
            # The form shows what is stored; clearing the fields removes the rules.
            row.get_by_role("button", name="Edit Autumn sale").click()
            form = page.get_by_role("form", name="Edit promotion “Autumn sale”")
            expect(form.get_by_role("group", name="Journey stages").get_by_label("lapsed")).to_be_checked()
            expect(form.get_by_label("Countries")).to_have_value("United Kingdom, EIRE")
            form.get_by_label("Countries").fill("")
            form.get_by_label("Cap: impressions").fill("")
            form.get_by_label("Cap: days").fill("")
            form.get_by_role("button", name="Save promotion").click()
            expect(row).to_contain_text("For repeat, lapsed · ≥ 2 orders")
            saved = marketing_get(live_server, "/v1/promotions/autumn-sale")
            assert saved["cap"] is None and saved["eligibility"].get("countries") is None, saved

            # Pause it, then delete it (asked first: cancel keeps it).
            row.get_by_role("button", name="Pause Autumn sale").click()
            expect(row).to_contain_text("paused")
            assert marketing_get(live_server, "/v1/promotions/autumn-sale")["status"] == "paused"
            row.get_by_role("button", name="Delete Autumn sale").click()
            dialog = page.get_by_role("dialog", name="Delete “Autumn sale”?")
            assert_accessible(page, "the delete dialog")
            dialog.get_by_role("button", name="Cancel").click()
            expect(row).to_have_count(1)
            row.get_by_role("button", name="Delete Autumn sale").click()
            dialog.get_by_role("button", name="Delete promotion").click()
            expect(page.locator("#promotions-result tr", has_text="autumn-sale")).to_have_count(0)
            ids = [p["promotion_id"] for p in marketing_get(live_server, "/v1/promotions")["promotions"]]
            assert "autumn-sale" not in ids, ids

            # Create a message slot with three variants (a duplicate id first: shown at the variants).
            page.get_by_role("link", name="Messages").click()
            expect(page.locator("#messages-result h2").first).to_contain_text("homepage-banner")
            page.get_by_role("button", name="New message slot").click()
            form = page.get_by_role("form", name="New message slot")
            form.get_by_label("Slot").fill("checkout-note")
            form.get_by_role("button", name="Add a variant").click()
            for n, (vid, content) in enumerate((("thanks", "Thank you!"), ("thanks", "Free returns"),
                                                ("care", "We are here to help"))):
                variant = form.get_by_role("group", name=f"Variant {n + 1}")
                variant.get_by_label("Variant ID").fill(vid)
                variant.get_by_label("Content").fill(content)
            assert_accessible(page, "the new message slot form")
            form.get_by_role("button", name="Save message slot").click()
            expect(form.locator(".error-summary")).to_be_visible()
            expect(form.locator("[aria-invalid=true]")).not_to_have_count(0)
            assert_accessible(page, "the message slot form with its errors")
            form.get_by_role("group", name="Variant 2").get_by_label("Variant ID").fill("returns")
            form.get_by_role("button", name="Save message slot").click()
            expect(page.locator('[data-slot="checkout-note"]')).to_be_visible()
            slot = marketing_get(live_server, "/v1/messages/checkout-note")
            assert [v["id"] for v in slot["variants"]] == ["thanks", "returns", "care"], slot

            # Build an audience, preview it, and download it as CSV.
            page.get_by_role("link", name="Audiences").click()
            form = page.get_by_role("form", name="Build an audience")
            form.get_by_label("Targets").fill(" ".join(published.items[:3]))
            form.get_by_label("Size").fill("25")
            form.get_by_role("button", name="Preview audience").click()
            preview = page.get_by_role("table", name="Audience preview")
            expect(preview.locator("tbody tr")).to_have_count(20)
            expect(page.get_by_text("purchases since its data count")).to_be_visible()
            assert_accessible(page, "the audiences view")
            with page.expect_download() as download_info:
                form.get_by_role("button", name="Download CSV").click()
            download = download_info.value
            assert download.suggested_filename == "audience.csv"
            rows = list(csv.reader(Path(download.path()).read_text().splitlines()))
            assert rows[0] == ["customer_id", "score", "reason"]
            assert len(rows) == 26 and all(len(r) == 3 and r[0] for r in rows[1:]), rows[:3]
            assert rows[1][0] == preview.locator("tbody tr td").first.inner_text()
            # the targeting needs its targets: the error is shown at the field
            form.get_by_label("Targets").fill("")
            form.get_by_role("button", name="Preview audience").click()
            expect(form.get_by_label("Targets")).to_have_attribute("aria-invalid", "true")
            page.screenshot(path=str(tmp_path / "audiences.png"), full_page=True)
        finally:
            browser.close()
    assert not page_errors, page_errors
