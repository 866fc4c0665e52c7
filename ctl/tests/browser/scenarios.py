"""Reads the Scenarios section of the Pluribus dashboard in a real headless Chromium
(Debian's `chromium`, through pip `playwright`), page after page through its pager, the
way a person does. Run by ctl/tests/dashboard_scenarios.rs:

    python3 scenarios.py URL RUNS [NOTE [FLEET]]

RUNS: how many runs the section must say it holds before reading (0: read what shows once
the page is live); NOTE: text the note above the runs must come to contain first; FLEET: a
fleet the Fleets table must come to show. Prints
one JSON object on stdout: the note, the pager's text, the run ids of each page in order,
the fleets the Fleets table shows, and the page's script errors. Exits non-zero
(with the reason on stderr) when the page does not show them.
"""

import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("PLURIBUS_CHROMIUM", "/usr/bin/chromium")
# Generous: the machine running the tests may be busy.
TIMEOUT_MS = 30_000


def main():
    url, runs = sys.argv[1], int(sys.argv[2])
    note = sys.argv[3] if len(sys.argv) > 3 else ""
    fleet = sys.argv[4] if len(sys.argv) > 4 else ""
    seen = {"pages": []}
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
        expect(page.locator("#live")).to_contain_text("live")
        pager = page.locator("#scenarios-pager")
        if runs:
            expect(pager).to_contain_text(f"({runs})" if runs > 10 else f"{runs} in all")
        if note:
            expect(page.locator("#scenarios-note")).to_contain_text(note)
        if fleet:
            expect(page.locator(f'#fleets tr[data-fleet="{fleet}"]')).to_be_visible()
        seen["fleets"] = [r.get_attribute("data-fleet") for r in page.locator("#fleets tr[data-fleet]").all()]
        seen["note"] = page.locator("#scenarios-note").inner_text()
        seen["pager"] = pager.inner_text()
        rows = page.locator("#scenarios tbody tr.run")
        while True:
            seen["pages"].append([r.get_attribute("data-run") for r in rows.all()])
            nxt = pager.locator("button", has_text="›")
            if nxt.count() == 0 or nxt.is_disabled():
                break
            shown = len(seen["pages"])
            nxt.click()
            expect(pager).to_contain_text(f"page {shown + 1} of")
            # The rows follow the pager in the same frame.
            expect(rows.first).not_to_have_attribute("data-run", seen["pages"][-1][0])
        seen["page_errors"] = errors
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test prints why
        print(f"scenarios.py: {e}", file=sys.stderr)
        sys.exit(1)
