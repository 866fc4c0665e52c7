"""Drives the Pluribus dashboard in a real headless Chromium (Debian's `chromium`, through
pip `playwright`), the way a person uses it. Run by ctl/tests/dashboard.rs:

    python3 dashboard.py URL READ_ONLY_URL FLEET DEVICE NEW_COUNT SCREENSHOT_DIR [SCENARIO [LONG]]

SCENARIO: the name of a detached scenario run (with a passing check) the page must show
ended; LONG: one that stays in its last step (a long wait) after a passing check.

Prints one JSON object with what it saw on stdout; exits non-zero (with the reason on
stderr) when the page does not do what it should.
"""

import json
import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("PLURIBUS_CHROMIUM", "/usr/bin/chromium")
# Generous: the machine running the tests may be busy.
TIMEOUT_MS = 30_000


def main():
    url, ro_url, fleet, device, new_count, shots = sys.argv[1:7]
    scenario = sys.argv[7] if len(sys.argv) > 7 else ""
    long_scenario = sys.argv[8] if len(sys.argv) > 8 else ""
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)

        # The fleet and both agents show.
        row = page.locator(f'#fleets tr[data-fleet="{fleet}"]')
        expect(row).to_be_visible()
        expect(page.locator("#agents tbody tr[data-agent-id]")).to_have_count(2)
        seen["agents"] = page.locator("#agents .agent-name").all_inner_texts()

        # The achieved rate goes above zero.
        page.wait_for_function(
            "() => parseFloat(document.getElementById('achieved-rate')?.textContent || '0') > 0"
        )
        seen["achieved"] = page.locator("#achieved-rate").inner_text()

        # The cluster's chart of injected faults shows the lossy fleet's drops.
        page.wait_for_function(
            "() => { const l = document.getElementById('c-net').dataset.last;"
            " return l && JSON.parse(l)['dropped/s'] > 0; }"
        )
        seen["injected_dropped_per_s"] = json.loads(
            page.locator("#c-net").get_attribute("data-last")
        )["dropped/s"]

        # The fleet's own charts open from its name.
        row.locator("a.fleet").click()
        expect(page.locator("#fleet-charts-box")).to_be_visible()

        # Scale from the page, through the confirmation.
        row.locator('button[data-act="scale"]').click()
        expect(page.locator("#confirm")).to_be_visible()
        page.fill("#confirm-input", new_count)
        page.click("#confirm-ok")
        expect(page.locator("#notice")).to_contain_text(f"scaled from")
        seen["notice"] = page.locator("#notice").inner_text()
        expect(row.locator("td.desired")).to_have_text(new_count)

        # A new event appears in the live list.
        expect(page.locator('#events li[data-kind="fleet_scaled"]').first).to_contain_text(
            f"fleet={fleet}"
        )
        # The event filter keeps only what matches.
        page.select_option("#event-kind", "fleet_scaled")
        expect(page.locator("#events li:not([data-kind=fleet_scaled])")).to_have_count(0)
        page.select_option("#event-kind", "")

        # The device drill-down shows its agent and last seq.
        page.fill("#device-id", device)
        page.click('#device-form button[type="submit"]')
        expect(page.locator("#device-seq")).to_have_text(re.compile(r"^\d+$"))
        seen["device_seq"] = int(page.locator("#device-seq").inner_text())
        seen["device_agent"] = page.locator("#device-agent").inner_text()

        # A command to the device, and its reply.
        page.click("#command-send")
        expect(page.locator("#command-out")).to_contain_text("applied")
        seen["command_reply"] = page.locator("#command-out").inner_text()

        # The detached scenario run shows in the Scenarios section, with its check and
        # its verdict once it ends.
        if scenario:
            run = page.locator(f'#scenarios tr.run[data-scenario="{scenario}"]')
            expect(run).to_be_visible()
            check = run.locator("tr.check").first
            expect(check.locator(".verdict")).to_have_text("pass")
            expect(run.locator(".run-verdict")).to_have_text("passed")
            seen["scenario_name"] = run.locator(".scenario-name").inner_text()
            seen["scenario_state"] = run.locator(".run-state").inner_text()
            seen["scenario_verdict"] = run.locator(".run-verdict").inner_text()
            seen["scenario_check"] = check.get_attribute("data-check")
            seen["scenario_check_value"] = check.locator(".value").inner_text()
            seen["scenario_check_verdict"] = check.locator(".verdict").inner_text()
        if long_scenario:
            run = page.locator(f'#scenarios tr.run[data-scenario="{long_scenario}"]')
            expect(run.locator(".run-state")).to_have_text("running")
            expect(run.locator("tr.check .verdict").first).to_have_text("pass")
            expect(run.locator(".run-step")).to_have_text("2/2")
            seen["long_state"] = run.locator(".run-state").inner_text()
            seen["long_step"] = run.locator(".run-step").inner_text()
            seen["long_step_text"] = run.locator(".run-step-text").inner_text()
            seen["long_verdict"] = run.locator(".run-verdict").inner_text()

        seen["controls"] = page.locator("button.control").count()
        page.wait_for_timeout(1500)  # one more frame, so the charts have points to show
        page.screenshot(path=os.path.join(shots, "dashboard.png"), full_page=True)

        # The report downloads as one HTML file.
        with page.expect_download() as d:
            page.click("#report-link")
        report = os.path.join(shots, "report.html")
        d.value.save_as(report)
        with open(report, encoding="utf-8") as f:
            html = f.read()
        seen["report_has_svg"] = "<svg" in html and fleet in html
        # The window figures of `pluribusctl report`: a table, the JSON and the CSV.
        rp = browser.new_page()
        rp.set_content(html)
        cells = rp.locator(f'#pluribus-window tr[data-fleet="{fleet}"] td').all_inner_texts()
        seen["report_window_messages"] = int(cells[3]) if len(cells) > 3 else None
        lossy = rp.locator('#pluribus-window tr[data-fleet="lossy"] td').all_inner_texts()
        seen["report_lossy_injected"] = lossy[-1] if lossy else None
        data = json.loads(rp.locator("#pluribus-data").inner_text())
        report = data.get("report") or {}
        seen["report_json_scope"] = report.get("scope")
        seen["report_json_web_messages"] = next(
            (f["messages"] for f in report.get("fleets", []) if f["name"] == fleet), None
        )
        seen["report_csv_web"] = next(
            (l for l in rp.locator("#pluribus-csv").inner_text().splitlines() if l.startswith("fleet," + fleet + ",")),
            None,
        )
        rp.close()

        # A read-only dashboard shows the same page without any control.
        ro = browser.new_page(viewport={"width": 1400, "height": 1000})
        ro.set_default_timeout(TIMEOUT_MS)
        ro.goto(ro_url)
        expect(ro.locator(f'#fleets tr[data-fleet="{fleet}"]')).to_be_visible()
        expect(ro.locator("#access")).to_contain_text("read-only")
        seen["read_only_banner"] = ro.locator("#access").inner_text()
        seen["read_only_controls"] = ro.locator("button.control").count()
        seen["read_only_command_form"] = ro.locator("#command-form").is_visible()
        ro.screenshot(path=os.path.join(shots, "dashboard-read-only.png"), full_page=True)

        seen["page_errors"] = errors
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
