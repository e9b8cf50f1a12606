"""Drives Debian's Chromium (headless, through its ChromeDriver and Selenium) through the
console the status API serves, against a running pipeline. Called by tests/console.rs:

    console_browser.py <scenario.json>

The scenario names the API, an operator key, a dossier code with its lookup token, what
the page must show, and where screenshots go. What the page shows is checked against the
API's own JSON, fetched here with the same key. The live part is a conversation on
stdin/stdout: this script prints `LIVE <received today>` once the operators' view is up,
the test publishes more submissions and answers `PUBLISHED <n>`, and the page must show
them without being reloaded.
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

scenario = json.load(open(sys.argv[1]))
BASE = scenario["base"]
KEY = scenario["operator_key"]
SHOTS = scenario["screenshots"]
os.makedirs(SHOTS, exist_ok=True)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def api(path):
    req = urllib.request.Request(BASE + path, headers={"Authorization": "Bearer " + KEY})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


options = Options()
options.binary_location = scenario["chromium"]
for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1400,2200", "--user-data-dir=" + scenario["profile"]]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(executable_path=scenario["chromedriver"]), options=options)
wait = WebDriverWait(driver, 60, poll_frequency=0.2)
by_id = lambda i: driver.find_element(By.ID, i)


def visible(i):
    return lambda d: d.find_element(By.ID, i).is_displayed()


def text(i):
    return by_id(i).text.strip()


def rows(table_id):
    """The table's body rows as lists of cell texts (the "none" row left out), read in
    one script: the page refreshes its tables while we look."""
    got = driver.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent.trim()))", table_id)
    return [r for r in got if r != ["none"]]


def number(s):
    return int(s.replace(",", ""))


def when(iso):
    return iso[:16].replace("T", " ")


try:
    # --- the citizen's lookup ---------------------------------------------------------
    driver.get(BASE + "/console/")
    check("motcua" in driver.title, "the console page loads: " + driver.title)
    wait.until(visible("lookup-form"))
    citizen = scenario["citizen"]
    by_id("lookup-code").send_keys(citizen["code"])
    by_id("lookup-token").send_keys(citizen["token"])
    by_id("lookup-submit").click()
    wait.until(visible("lookup-result"))
    check(text("lookup-result-code") == citizen["code"], "the looked-up code: " + text("lookup-result-code"))
    status = by_id("lookup-result-status").get_attribute("data-status")
    check(status == citizen["status"], "status %r, expected %r" % (status, citizen["status"]))
    check(text("lookup-result-due") == when(citizen["due_at"]), "due %r, expected %r" % (text("lookup-result-due"), citizen["due_at"]))
    steps = rows("lookup-steps")
    check([s[0] for s in steps] == ["reception", "verification", "appraisal", "approval", "result"], "steps: %r" % steps)
    current = driver.find_elements(By.CSS_SELECTOR, "#lookup-steps tbody tr.current")
    check(len(current) == 1 and current[0].get_attribute("data-step") == citizen["step"],
          "the current step is marked: %r" % [c.get_attribute("data-step") for c in current])
    driver.save_screenshot(os.path.join(SHOTS, "1-citizen-lookup.png"))
    log("citizen lookup: %s %s due %s, step %s" % (citizen["code"], status, text("lookup-result-due"), citizen["step"]))

    # A wrong token: refused, and nothing of the dossier shown.
    by_id("lookup-token").clear()
    by_id("lookup-token").send_keys(citizen["wrong_token"])
    by_id("lookup-submit").click()
    wait.until(visible("lookup-error"))
    check("No dossier with this code and lookup token" in text("lookup-error"), "refusal: " + text("lookup-error"))
    check(not by_id("lookup-result").is_displayed(), "the refused lookup shows no dossier")
    driver.save_screenshot(os.path.join(SHOTS, "2-citizen-wrong-token.png"))
    log("wrong token refused: " + text("lookup-error"))

    # --- operators: a wrong key first --------------------------------------------------
    by_id("tab-operator").click()
    wait.until(visible("key-form"))
    by_id("key").send_keys("motcua_not-a-key")
    by_id("key-submit").click()
    wait.until(visible("operator-error"))
    check("not valid" in text("operator-error"), "a wrong key is refused: " + text("operator-error"))
    check(not by_id("operator").is_displayed(), "nothing shown to a wrong key")
    by_id("key").clear()
    by_id("key").send_keys(KEY)
    by_id("key-submit").click()
    wait.until(visible("operator"))
    wait.until(lambda d: text("updated") != "–")
    # Let one refresh pass settle the figures, then compare them with the API's.
    wait.until(lambda d: rows("lag-table") and rows("bn-steps") and d.find_elements(By.CSS_SELECTOR, "#forecast-chart svg"))

    load = api("/load")
    check(number(text("sum-open")) == load["open"], "open %s vs API %s" % (text("sum-open"), load["open"]))
    check(number(text("sum-overdue")) == load["overdue"], "overdue %s vs API %s" % (text("sum-overdue"), load["overdue"]))
    check(load["open"] > 0 and load["overdue"] > 0, "the scenario has open and overdue dossiers: %r" % load)
    shown_units = {r[0]: r for r in rows("load-table")}
    for u in load["units"]:
        r = shown_units.get(u["unit"])
        check(r is not None, "unit %s listed" % u["unit"])
        check(number(r[1]) == u["open"] and number(r[5]) == u["received_today"], "unit %s: %r vs %r" % (u["unit"], r, u))

    lag = {r[0]: r for r in rows("lag-table")}
    for stage in scenario["stages"]:
        check(stage in lag, "lag of %s shown: %r" % (stage, sorted(lag)))
        check(number(lag[stage][2]) > 0, "%s processed messages: %r" % (stage, lag[stage]))

    dead = scenario["dead_letters"]
    check(number(text("sum-dead")) == dead["total"], "dead letters %s, expected %s" % (text("sum-dead"), dead["total"]))
    causes = {r[0]: r for r in rows("dead-causes")}
    check(dead["reason"] in causes and number(causes[dead["reason"]][3]) == dead["total"], "causes: %r" % causes)

    parked = {r[0] for r in rows("parked-table")}
    check(set(scenario["parked"]) <= parked, "parked %r, expected %r" % (parked, scenario["parked"]))
    check(number(text("sum-parked")) == len(scenario["parked"]), "parked count " + text("sum-parked"))

    risk = api("/at-risk?limit=30")
    shown_risk = [r[0] for r in rows("risk-table")]
    check(shown_risk == [d["dossier_code"] for d in risk["dossiers"]], "at-risk %r vs API %r" % (shown_risk, risk["dossiers"][:3]))
    check(risk["overdue"] > 0, "overdue dossiers at risk")
    check(len(driver.find_elements(By.CSS_SELECTOR, "#risk-table tr.overdue")) > 0, "overdue rows marked")

    bn = api("/bottlenecks?top=8")
    steps = {r[0]: r for r in rows("bn-steps")}
    for s in bn["steps"]:
        check(number(steps[s["step"]][1]) == s["finished"] and number(steps[s["step"]][4]) == s["running"],
              "step %s: %r vs %r" % (s["step"], steps[s["step"]], s))
    check([r[0] for r in rows("bn-units")] == [u["code"] for u in bn["units"]], "units that miss deadlines, in order")
    check(bn["units"] and bn["units"][0]["overdue"] > 0, "the worst unit has overdue dossiers: %r" % bn["units"][:1])

    # The forecast of the center with the history: the chart and the held-back error.
    unit = scenario["forecast_unit"]
    driver.find_element(By.CSS_SELECTOR, "#forecast-unit option[value='%s']" % unit).click()
    wait.until(lambda d: text("forecast-note").startswith(unit + " —") and "mean absolute error" in text("forecast-note"))
    f = api("/units/%s/forecast?hours=48" % unit)
    mae = by_id("forecast-note").get_attribute("data-mae")
    check(float(mae) == f["held_back"]["mae_per_hour"], "MAE shown %s vs API %s" % (mae, f["held_back"]))
    svg = driver.find_element(By.CSS_SELECTOR, "#forecast-chart svg")
    hours = int(svg.get_attribute("data-hours"))
    bars = int(svg.get_attribute("data-actual-bars"))
    check(hours >= 48 and bars == len(f["this_week"]), "chart: %d hours, %d bars vs %d hours this week" % (hours, bars, len(f["this_week"])))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(os.path.join(SHOTS, "3-operators-top.png"))
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    driver.save_screenshot(os.path.join(SHOTS, "4-operators-bottom.png"))
    log("operators: open %s, overdue %s, dead letters %s, parked %s, at risk %s; forecast %s MAE %s/h (naive %s/h)" % (
        load["open"], load["overdue"], dead["total"], len(parked), risk["at_risk"], unit, mae, f["held_back"]["naive_mae_per_hour"]))

    # --- live: more submissions arrive while the page is open ---------------------------
    before = number(text("sum-today"))
    print("LIVE %d" % before, flush=True)
    answer = sys.stdin.readline().split()
    check(answer and answer[0] == "PUBLISHED", "the test's answer: %r" % answer)
    more = int(answer[1])
    WebDriverWait(driver, 90, poll_frequency=0.5).until(lambda d: number(text("sum-today")) >= before + more)
    check(driver.execute_script("return performance.getEntriesByType('navigation').length") == 1, "no reload")
    driver.save_screenshot(os.path.join(SHOTS, "5-operators-live.png"))
    log("live: received today went from %d to %s without a reload" % (before, text("sum-today")))
    print("OK", flush=True)
finally:
    driver.quit()
