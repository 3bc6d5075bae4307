"""The dashboard as an operator uses it, in chromium (tests/browser/run sets the stage).

Signs in as a deployer, watches a canary go wave by wave, pauses and resumes it with the
buttons (the API must agree), sees a broken version rolled back with the health policy's
reason, visits every page with a screenshot of each, and fails on any console error.
"""
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

from playwright.sync_api import expect, sync_playwright

URL, SHOTS = sys.argv[1], pathlib.Path(sys.argv[2])
HOTSWAP = os.environ["HOTSWAP_BIN"]
TOKEN = os.environ["HOTSWAP_TOKEN"]
# Long enough to watch a wave and press a button; the whole test stays well under a minute.
SOAK_SECONDS = 4
WAIT_MS = 90_000


def api(path):
    request = urllib.request.Request(URL + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request) as r:
        return json.load(r)


def deploy(version):
    config = {"initialPercentage": 10, "increments": [50, 100], "gate": {"soakSeconds": SOAK_SECONDS}}
    out = subprocess.run(
        [HOTSWAP, "deployments", "create", "--firmware", version, "--model", "sensor-v1",
         "--filter", "model=sensor-v1", "--strategy", "canary", "--config", json.dumps(config),
         "--health-config", json.dumps({"pollSeconds": 1}), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["id"]


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    print(f"screenshot {SHOTS / name}.png")


def main():
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        # Every button asks first; the operator says yes.
        page.on("dialog", lambda d: d.accept())

        page.goto(URL + "/")
        expect(page.locator("h1")).to_have_text("Sign in")
        shot(page, "sign-in")
        page.fill("#name", "dora")
        page.fill("#password", "a wrong password")
        page.click("button[type=submit]")
        expect(page.locator("[role=status]")).to_contain_text("wrong name or password")
        # The browser logs the refused sign-in's 401 itself: the one console error expected.
        refused = [e for e in errors if "status of 401" in e]
        assert len(refused) <= 1, refused
        for e in refused:
            errors.remove(e)
        page.fill("#password", os.environ["HOTSWAP_PASSWORD"])
        page.click("button[type=submit]")
        expect(page.locator("#who")).to_have_text("dora (deployer)")
        # A deployer does not see the audit log.
        expect(page.locator("nav a[href='#/audit']")).to_be_hidden()

        good = deploy("2.0.0")
        page.goto(f"{URL}/#/deployments")
        row = page.locator(f"#deployments tr[data-deployment='{good}']")
        expect(row).to_be_visible(timeout=WAIT_MS)
        shot(page, "deployments")
        row.locator("a").click()
        expect(page.locator("#state")).to_have_text("running")
        # Wave by wave: the current wave's marker moves as the page refreshes itself.
        expect(page.locator("#waves tr.current[data-wave='0']")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#waves tr.current[data-wave='1']")).to_be_visible(timeout=WAIT_MS)
        shot(page, "deployment-running")
        page.click("button[data-action=pause]")
        expect(page.locator("#state")).to_have_text("paused", timeout=WAIT_MS)
        assert api(f"/api/v1/deployments/{good}")["state"] == "paused"
        expect(page.locator("button[data-action=resume]")).to_be_visible()
        expect(page.locator("button[data-action=pause]")).to_have_count(0)
        shot(page, "deployment-paused")
        page.click("button[data-action=resume]")
        expect(page.locator("#state")).not_to_have_text("paused", timeout=WAIT_MS)
        assert api(f"/api/v1/deployments/{good}")["state"] in ("running", "completed")
        expect(page.locator("#waves tr.current[data-wave='2']")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#state")).to_have_text("completed", timeout=WAIT_MS)
        expect(page.locator("#verdicts")).to_contain_text("proceed")
        shot(page, "deployment-completed")

        bad = deploy("3.0.0")
        page.goto(f"{URL}/#/deployments/{bad}")
        expect(page.locator("#state")).to_have_text("rolled-back", timeout=WAIT_MS)
        reason = api(f"/api/v1/deployments/{bad}")["reason"]
        assert reason, "a rollback has a reason"
        expect(page.locator("#reason")).to_contain_text(reason)
        expect(page.locator("#verdicts")).to_contain_text("roll back")
        # Nothing of the page is a leftover of a value that was not there.
        expect(page.locator("main")).not_to_contain_text("null")
        expect(page.locator("main")).not_to_contain_text("[object")
        shot(page, "deployment-rolled-back")

        page.goto(f"{URL}/#/fleet")
        expect(page.locator("h1")).to_have_text("Fleet: 30 devices", timeout=WAIT_MS)
        expect(page.locator("#devices tr")).to_have_count(31)
        # The charts count the fleet: every device on 2.0.0 after the rollback of 3.0.0.
        expect(page.locator(".chart").first).to_contain_text("2.0.0")
        expect(page.locator(".chart").first).to_contain_text("30")
        shot(page, "fleet")
        page.locator("#devices a").first.click()
        expect(page.locator("h1")).to_contain_text("Device ")
        expect(page.locator("#history")).to_contain_text("2.0.0")
        shot(page, "device")
        page.goto(f"{URL}/#/plugins")
        expect(page.locator("#plugins")).to_contain_text("canary")
        shot(page, "plugins")

        # The administrator sees the audit log, and who did what.
        page.click("#sign-out")
        expect(page.locator("h1")).to_have_text("Sign in")
        subprocess.run([HOTSWAP, "users", "create", "ada", "--role", "admin"], check=True, capture_output=True)
        page.fill("#name", "ada")
        page.fill("#password", os.environ["HOTSWAP_PASSWORD"])
        page.click("button[type=submit]")
        expect(page.locator("#who")).to_have_text("ada (admin)")
        page.click("nav a[href='#/audit']")
        expect(page.locator("#audit")).to_contain_text("user:dora")
        shot(page, "audit")
        browser.close()
    if errors:
        print("\n".join(errors))
        sys.exit("the browser console had errors")
    print("browser: dashboard checks passed")


if __name__ == "__main__":
    main()
