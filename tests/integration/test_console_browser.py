"""The web console in a real browser: Debian's headless Chromium (tests/support/browser.py) driven by Selenium,
against a real `flagsvc serve` (gunicorn, two workers sharing sessions through the embedded redis-server), the
real controller and judge, and SDK traffic from the real client.

Signed in as an admin, the flag list shows a rollout advancing without a reload; the flag page draws its charts;
a rollback with a reason lands in the decision log. XSS payloads in a description and in a reason stay text
(nothing runs: no alert, no window flag set). Signed in read-only, no action button is enabled and the API
refuses the read token's writes. Screenshots of the list and the flag page go to the test's directory (copies
are committed as docs/images/console-*.png: FLAGSVC_CONSOLE_SCREENSHOTS=docs/images writes them there)."""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path

import pytest
import requests
from flagsvc_client import FlagClient
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import wait_for
from tests.support.browser import chromium
from tests.support.servers import Server

pytestmark = pytest.mark.slow

ADMIN_SECRET, SDK_SECRET, READ_SECRET = "admin-console-e2e", "sdk-console-e2e", "read-console-e2e"
XSS_DESCRIPTION = 'New checkout <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_REASON = 'checkout errors "><img src=x onerror=alert(1)><script>window.__xss=3</script>'


def _wait(driver, condition, timeout: float = 30.0, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def _no_script_ran(driver) -> None:
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError(f"an alert ran: {text}")
    except NoAlertPresentException:
        pass
    assert driver.execute_script("return window.__xss === undefined"), "an injected script ran"


def _sign_in(driver, url: str, token: str) -> None:
    driver.get(url + "/ui/")
    _wait(driver, lambda d: d.find_elements(By.ID, "token"), message="no sign-in form")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    _wait(driver, lambda d: d.current_url.endswith("/ui/flags") and d.find_elements(By.ID, "flags"),
          message="not signed in")


def _cell(driver, key: str, field: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#flags tr[data-key="{key}"] [data-field="{field}"]').text


def test_the_console_in_a_real_browser(tmp_path):
    server = Server(tmp_path / "data", "--workers", "2", env={
        "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_SECRET}", "FLAGSVC_SDK_KEYS": f"web={SDK_SECRET}",
        "FLAGSVC_READ_TOKENS": f"viewer={READ_SECRET}", "FLAGSVC_CONTROLLER_INTERVAL": "0.25",
        "FLAGSVC_WEBHOOK_ALLOW": "hooks.example.com",
    })
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}

    def call(method: str, path: str, body: dict | None = None, headers: dict | None = None) -> requests.Response:
        return requests.request(method, server.url + path, json=body, headers=headers or admin, timeout=10)

    client, driver = None, None
    stop = threading.Event()
    try:
        assert call("POST", "/api/v1/flags", {"key": "checkout", "description": XSS_DESCRIPTION,
                                              "stages": [20, 50, 100], "bake_seconds": 1,
                                              # both arms alike: a false rollback at most 0.1 % of runs
                                              "analysis": {"min_requests": 100, "alpha": 0.001}}).status_code == 201
        assert call("POST", "/api/v1/flags", {"key": "search_v2", "description": "Other flag"}).status_code == 201
        hook = call("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/in", "events": ["complete"],
                                                 "description": XSS_DESCRIPTION})
        assert hook.status_code == 201, hook.text
        client = FlagClient(server.url, sdk_key=SDK_SECRET, flush_interval=0.25)
        assert client.wait_until_ready(timeout=10)

        def traffic() -> None:
            rng = random.Random(7)
            while not stop.is_set():
                for _ in range(100):
                    user = f"u-{rng.randrange(50_000)}"
                    client.is_enabled("checkout", user)
                    client.record("checkout", user, ok=rng.random() >= 0.05, latency_ms=80.0)
                stop.wait(0.02)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()

        driver = chromium(tmp_path / "profile")
        _sign_in(driver, server.url, ADMIN_SECRET)
        assert _cell(driver, "checkout", "state") == "off"
        _no_script_ran(driver)
        description = driver.find_element(By.CSS_SELECTOR, '#flags tr[data-key="checkout"] .description')
        assert description.text == XSS_DESCRIPTION and not description.find_elements(By.CSS_SELECTOR, "*")

        # watch the rollout advance, live: the page is never reloaded (the marker set on it stays)
        driver.execute_script("window.__sameDocument = true")
        assert call("POST", "/api/v1/flags/checkout/start").status_code == 200
        _wait(driver, lambda d: _cell(d, "checkout", "state") == "rolling", message="start not shown live")
        _wait(driver, lambda d: _cell(d, "checkout", "percent") in ("50 %", "100 %"), timeout=90,
              message="the advance was not shown live: " + call("GET", "/api/v1/flags/checkout/stats").text[:500])
        driver.save_screenshot(str(tmp_path / "console-flags.png"))
        _wait(driver, lambda d: _cell(d, "checkout", "state") == "complete", timeout=90,
              message="the completion was not shown live: " + call("GET", "/api/v1/flags/checkout/stats").text[:500])
        assert _cell(driver, "checkout", "percent") == "100 %"
        assert driver.execute_script("return window.__sameDocument === true"), "the page was reloaded"
        assert _cell(driver, "checkout", "last").startswith("complete by controller: canary no worse")
        assert not driver.find_element(By.ID, "flags-changed").is_displayed()
        assert call("POST", "/api/v1/flags", {"key": "later", "description": "created meanwhile"}).status_code == 201
        _wait(driver, lambda d: d.find_element(By.ID, "flags-changed").is_displayed(), message="no new-flag notice")
        assert int(driver.find_element(By.CSS_SELECTOR, 'tr[data-key="checkout"] svg.spark')
                   .get_attribute("data-drawn")) >= 2

        # search
        search = driver.find_element(By.ID, "search")
        search.send_keys("search")
        search.submit()
        _wait(driver, lambda d: [r.get_attribute("data-key") for r in d.find_elements(By.CSS_SELECTOR,
                                                                                      "#flags tr[data-key]")]
              == ["search_v2"], message="search did not filter")

        # the flag page draws its charts
        driver.get(server.url + "/ui/flags/checkout")
        for chart in ("chart-rollout", "chart-errors", "chart-latency", "chart-judge"):
            _wait(driver, lambda d, c=chart: int(d.find_element(By.ID, c).get_attribute("data-drawn") or 0) > 1,
                  message=f"{chart} not drawn")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart-rollout circle.marker")) >= 2
        assert driver.find_element(By.ID, "flag-description").text == XSS_DESCRIPTION
        _no_script_ran(driver)
        driver.save_screenshot(str(tmp_path / "console-flag.png"))

        # roll back with a reason: confirmed, sent with the page's revision; it shows in the decision log
        form = driver.find_element(By.CSS_SELECTOR, 'form[data-action="rollback"]')
        form.find_element(By.NAME, "reason").send_keys(XSS_REASON)
        form.find_element(By.NAME, "confirm").click()
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(driver, lambda d: d.find_element(By.ID, "flag-state").text == "rolled_back",
              message="rollback not shown: " + driver.find_element(By.ID, "problem").text)
        first_entry = 'const r = document.querySelector("#decision-log tbody tr"); if (!r) return null; ' \
                      'const f = (c) => r.querySelector(c); return [f(".actor").textContent, ' \
                      'f(".what").textContent, f(".reason").textContent, f(".reason").children.length]'
        _wait(driver, lambda d: d.execute_script(first_entry) == ["ops", "rollback → rolled_back", XSS_REASON, 0],
              message=f"the rollback is not first in the decision log: {driver.execute_script(first_entry)}")
        _no_script_ran(driver)
        history = call("GET", "/api/v1/flags/checkout/history").json()["history"]
        assert (history[0]["action"], history[0]["actor"], history[0]["reason"]) == ("rollback", "ops", XSS_REASON)
        driver.refresh()  # server-rendered (then redrawn by the script), the reason is text as well
        _wait(driver, lambda d: d.execute_script(first_entry) == ["ops", "rollback → rolled_back", XSS_REASON, 0],
              message="the reason is not shown as text after a reload")
        _no_script_ran(driver)

        # the audit log and the webhook delivery log show the payloads as text as well
        driver.get(server.url + "/ui/audit?flag=checkout")
        _wait(driver, lambda d: XSS_REASON in d.find_element(By.ID, "audit-log").text, message="reason not in audit")
        assert not driver.find_elements(By.CSS_SELECTOR, "#audit-log img, #audit-log script")
        deliveries = f"/api/v1/webhooks/{hook.json()['id']}/deliveries"
        assert wait_for(lambda: call("GET", deliveries).json()["deliveries"], timeout=30), "no delivery logged"
        driver.get(server.url + "/ui/webhooks")
        driver.find_element(By.LINK_TEXT, hook.json()["id"]).click()
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#deliveries td.status"),
              message="the rollback's delivery is not in the page")
        assert "complete" in driver.find_element(By.ID, "deliveries").text
        assert XSS_DESCRIPTION in driver.find_element(By.TAG_NAME, "main").text
        assert not driver.find_elements(By.CSS_SELECTOR, "main img, main script")
        _no_script_ran(driver)

        # read-only: no enabled action button, and the API refuses the read token's writes
        driver.find_element(By.ID, "sign-out").click()
        _wait(driver, lambda d: d.current_url.endswith("/ui/sign-in"), message="not signed out")
        _sign_in(driver, server.url, READ_SECRET)
        assert driver.find_element(By.ID, "scope").text == "read-only"
        driver.get(server.url + "/ui/flags/checkout")
        _wait(driver, lambda d: d.find_elements(By.ID, "read-only-note"))
        buttons = driver.find_elements(By.CSS_SELECTOR, "main form button")
        assert len(buttons) == 7 and not any(b.is_enabled() for b in buttons)
        read = {"Authorization": f"Bearer {READ_SECRET}"}
        assert call("POST", "/api/v1/flags/checkout/start", headers=read).status_code == 403
        assert call("PUT", "/api/v1/flags/checkout/percent", {"percent": 5}, headers=read).status_code == 403
        assert call("GET", "/api/v1/flags/checkout").json()["state"] == "rolled_back"
        _no_script_ran(driver)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        if client is not None:
            client.close(timeout=2)
        server.stop()
    for name in ("console-flags.png", "console-flag.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    copies = os.environ.get("FLAGSVC_CONSOLE_SCREENSHOTS")  # a directory: docs/images to refresh the README's
    if copies:
        for name in ("console-flags.png", "console-flag.png"):
            shutil.copyfile(tmp_path / name, Path(copies) / name)


def _setting(driver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#analysis-form input[data-setting="{name}"]').get_attribute("value")


def _save_setting(driver, name: str, value: str) -> None:
    form = driver.find_element(By.ID, "analysis-form")
    field = form.find_element(By.CSS_SELECTOR, f'input[data-setting="{name}"]')
    field.clear()
    field.send_keys(value)
    form.find_element(By.NAME, "confirm").click()
    form.find_element(By.CSS_SELECTOR, "button").click()


def test_the_flag_pages_forms_never_send_what_the_operator_did_not_see(tmp_path):
    """Saving a setting sends that setting only, and the form then shows the flag as saved; a change made
    elsewhere redraws an untouched form (values and revision) live, so saving another setting keeps it; a form
    the operator is filling in keeps the revision it was started on, so its save or action is refused (412) with
    a message instead of overwriting the change it never saw."""
    server = Server(tmp_path / "data", env={"FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_SECRET}",
                                            "FLAGSVC_SDK_KEYS": f"web={SDK_SECRET}"})
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}

    def call(method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, server.url + path, json=body, headers=admin, timeout=10)

    def flag() -> dict:
        return call("GET", "/api/v1/flags/settings").json()

    driver = None
    try:
        assert call("POST", "/api/v1/flags", {"key": "settings", "description": "forms"}).status_code == 201
        driver = chromium(tmp_path / "profile")
        _sign_in(driver, server.url, ADMIN_SECRET)
        driver.get(server.url + "/ui/flags/settings")
        _wait(driver, lambda d: d.find_elements(By.ID, "analysis-form"), message="no settings form")
        problem = driver.find_element(By.ID, "problem")

        # a save sends its setting, and the form shows what was saved (not the page's first values)
        _save_setting(driver, "alpha", "0.02")
        _wait(driver, lambda d: flag()["analysis"]["alpha"] == 0.02, message="alpha not saved: " + problem.text)
        _wait(driver, lambda d: _setting(d, "alpha") == "0.02", message=f"alpha shows {_setting(driver, 'alpha')}")
        _save_setting(driver, "beta", "0.1")
        _wait(driver, lambda d: flag()["analysis"]["beta"] == 0.1, message="beta not saved: " + problem.text)
        assert flag()["analysis"]["alpha"] == 0.02, "saving beta put alpha back"

        # another operator's change redraws the untouched form; the next save keeps it
        assert call("PATCH", "/api/v1/flags/settings", {"analysis": {"max_error_rate": 0.3}}).status_code == 200
        _wait(driver, lambda d: _setting(d, "max_error_rate") == "0.3", message="the form was not redrawn live")
        _save_setting(driver, "min_requests", "150")
        _wait(driver, lambda d: flag()["analysis"]["min_requests"] == 150, message="not saved: " + problem.text)
        assert flag()["analysis"]["max_error_rate"] == 0.3, "a console save wiped another operator's change"
        assert problem.text == ""

        # a form being filled in keeps the revision it started on: its save is refused, nothing changes
        form = driver.find_element(By.ID, "analysis-form")
        field = form.find_element(By.CSS_SELECTOR, 'input[data-setting="latency_ratio"]')
        field.clear()
        field.send_keys("3")
        started = flag()["revision"]
        assert call("PATCH", "/api/v1/flags/settings", {"analysis": {"error_ratio": 2.5}}).status_code == 200
        _wait(driver, lambda d: d.find_element(By.ID, "flag-revision").text == str(started + 1),
              message="the page did not follow the change")
        _wait(driver, lambda d: d.find_element(By.ID, "stale").is_displayed(), message="no notice of the change")
        assert form.find_element(By.NAME, "revision").get_attribute("value") == str(started)
        form.find_element(By.NAME, "confirm").click()
        form.find_element(By.CSS_SELECTOR, "button").click()
        _wait(driver, lambda d: "changed while this form" in problem.text, message="no refusal shown: " + problem.text)
        analysis = flag()["analysis"]
        assert (analysis["latency_ratio"], analysis["error_ratio"]) == (1.25, 2.5), analysis

        # the same for an action prepared before a change made elsewhere
        action = driver.find_element(By.CSS_SELECTOR, 'form[data-action="start"]')
        action.find_element(By.NAME, "reason").send_keys("go")
        action.find_element(By.NAME, "confirm").click()
        started = flag()["revision"]
        assert call("PATCH", "/api/v1/flags/settings", {"description": "changed meanwhile"}).status_code == 200
        _wait(driver, lambda d: d.find_element(By.ID, "flag-description").text == "changed meanwhile",
              message="the page did not follow the change")
        assert action.find_element(By.NAME, "revision").get_attribute("value") == str(started)
        driver.execute_script("document.getElementById('problem').textContent = ''")
        action.find_element(By.CSS_SELECTOR, "button").click()
        _wait(driver, lambda d: "changed while this form" in problem.text, message="no refusal shown: " + problem.text)
        assert flag()["state"] == "off"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        # the two refusals are 412s the browser logs as failed fetches; nothing else
        assert all("412" in e["message"] for e in errors), errors
    finally:
        if driver is not None:
            driver.quit()
        server.stop()
