"""The canary report inside Airflow's UI, end to end: REAL Airflow services and a real browser.

Airflow starts once for this module (``tests/airflow_services.py``) on the demo stack (HAProxy +
Prometheus + two demo services under load), with two release specs (``report``, and
``report_silent``, whose router never answers) and two users: ``admin``, and ``viewer``, who may
read ``report_silent``'s DAG but not ``report``'s (``tests/scoped_auth_manager.py``: the simple
auth manager, plus that one rule). Two releases run first, as short as the other end-to-end tests
make them: a broken build (rolled back at the first gate) and a healthy one (promoted). Then:

- over HTTP: anonymous → 401; the viewer → 403 for ``report``'s runs (as Airflow's own DAG
  endpoint answers them) but not for ``report_silent``'s, and an index without ``report``;
  admin → 200; the index says "router unreachable" for the silent router, in time;
- in headless Chromium (Debian's package, driven by Playwright): log in through Airflow's login
  page, open both runs' "Canary report" tab on the DAG run page, check the header, the plots and
  the decision table inside the tab, follow a task's log link, open the nav's index, and save
  screenshots under pytest's basetemp; the viewer, logged in, gets 403.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from tests import scoped_auth_manager
from tests.airflow_services import ROOT, AirflowServices, ReleaseApi
from tests.conftest import ADMIN_TOKEN, free_port

RELEASE = "report"
DAG_ID = f"canary_{RELEASE}"
SILENT = "report_silent"  # a second release whose router never answers
SILENT_HAPROXY = "rep_silent_haproxy"
VIEWER = "viewer"  # reads report_silent's DAG, not report's
HAPROXY, PROMETHEUS, CANARY_ADMIN, STABLE_ADMIN = "rep_haproxy", "rep_prometheus", "rep_canary_admin", "rep_stable_admin"
SPEC = {
    "name": RELEASE,
    "description": "The report's end-to-end release on the demo stack.",
    "stable_version": "v1",
    "router": {"type": "haproxy", "conn_id": HAPROXY, "settings": {"backend": "app"}},
    "metrics": {"type": "prometheus", "conn_id": PROMETHEUS, "settings": {"labels": {"job": "demo"}}},
    "steps": [10, 100],
    "bake_time": "5s",
    "settle_time": "1s",
    "gate_timeout": "60s",
    "poke_interval": "1s",
    "retries": 0,
    # As in test_airflow_services: a healthy build passes in one bake, 30% 5xx fails at once.
    "checks": [{"name": "errors", "kind": "error_rate", "max_increase_pp": 5, "min_requests": 100}],
    "deploy": {"type": "webhook", "conn_id": CANARY_ADMIN, "endpoint": "/admin/deploy"},
    "promote": {"type": "webhook", "conn_id": STABLE_ADMIN, "endpoint": "/admin/deploy"},
}
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                 "--disable-extensions", "--disable-component-update", "--disable-sync", "--no-first-run"]


def deploy(url: str, version: str) -> None:
    requests.post(url + "/admin/deploy", json={"version": version},
                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2).raise_for_status()


@pytest.fixture(scope="module")
def airflow(demo_stack, tmp_path_factory):
    releases = tmp_path_factory.mktemp("report-releases")
    (releases / f"{RELEASE}.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    silent_spec = dict(SPEC, name=SILENT, router={"type": "haproxy", "conn_id": SILENT_HAPROXY, "settings": {"backend": "app"}})
    (releases / f"{SILENT}.yaml").write_text(yaml.safe_dump(silent_spec, sort_keys=False))
    host, admin_port = demo_stack.admin_address
    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    connections = {
        SILENT_HAPROXY: {"conn_type": "generic", "host": "127.0.0.1", "port": silent.getsockname()[1]},
        HAPROXY: {"conn_type": "generic", "host": host, "port": admin_port},
        PROMETHEUS: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.prometheus_port},
        CANARY_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.canary_port, "password": ADMIN_TOKEN},
        STABLE_ADMIN: {"conn_type": "http", "host": "127.0.0.1", "port": demo_stack.stable_port, "password": ADMIN_TOKEN},
    }
    env = {"CANARY_RELEASES_DIR": str(releases),
           "AIRFLOW__CORE__AUTH_MANAGER": scoped_auth_manager.CLASS_PATH,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           scoped_auth_manager.DENIED_ENV: f"{VIEWER}:{DAG_ID}",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer"}
    # Nothing here tests the guard (tests/test_safety_faults.py does): a sweep a minute would only
    # spend the suite's CPU on task processes.
    env["CANARY_GUARD_SCHEDULE"] = "1h"
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()})
    services = AirflowServices(tmp_path_factory.mktemp("report-airflow-home"), api_port=free_port(), extra_env=env)
    services.start(timeout=180)
    try:
        services.wait_for_dag(DAG_ID, timeout=120)
        yield services
    finally:
        services.stop()
        silent.close()


@pytest.fixture(scope="module")
def runs(airflow, demo_stack) -> dict[str, str]:
    """A rolled-back and a promoted release of the spec: {"rolled_back": run_id, "promoted": run_id}."""
    api = ReleaseApi(airflow, DAG_ID)
    demo_stack.haproxy_command("set server app/stable weight 100")
    demo_stack.haproxy_command("set server app/canary weight 0")
    deploy(demo_stack.stable_url, "v1")
    deploy(demo_stack.canary_url, "v1")
    api.pause(False)
    found = {}
    for name, version in (("rolled_back", "broken"), ("promoted", "v2")):
        run_id = f"report__{version}__{uuid.uuid4().hex[:8]}"
        api.trigger({"version": version, "stable_version": "v1"}, run_id=run_id)
        run = api.wait_run(run_id, timeout=180)
        expected = "failed" if name == "rolled_back" else "success"
        assert run["state"] == expected, f"{name}: {api.states(run_id)}{api.mismatches(run_id)}"
        found[name] = run_id
    return found


def token(airflow: AirflowServices, user: str) -> str:
    password = json.loads(airflow.password_file.read_text())[user]
    answer = requests.post(f"{airflow.url}/auth/token", json={"username": user, "password": password}, timeout=10)
    answer.raise_for_status()
    return answer.json()["access_token"]


def report_path(run_id: str) -> str:
    return f"/canary-releases/runs/{DAG_ID}/{quote(run_id, safe='')}"


# ---------------------------------------------------------------------------------------------
# Over HTTP: Airflow's authentication and DAG permissions


def test_anonymous_gets_401(airflow, runs):
    for path in ("/canary-releases/", report_path(runs["rolled_back"])):
        answer = requests.get(airflow.url + path, timeout=10)
        assert answer.status_code == 401, (path, answer.status_code, answer.text[:300])
    forged = requests.get(airflow.url + "/canary-releases/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10)
    assert forged.status_code in (401, 403), forged.text  # Airflow answers an invalid token with 403


def test_a_user_who_may_not_read_the_dag_gets_403(airflow, runs):
    headers = {"Authorization": f"Bearer {token(airflow, VIEWER)}"}
    silent_dag = f"canary_{SILENT}"
    # Airflow itself: the viewer may read one DAG and not the other.
    assert requests.get(f"{airflow.url}/api/v2/dags/{DAG_ID}", headers=headers, timeout=10).status_code == 403
    assert requests.get(f"{airflow.url}/api/v2/dags/{silent_dag}", headers=headers, timeout=10).status_code == 200
    # The report answers the same, per DAG.
    for run_id in runs.values():
        answer = requests.get(airflow.url + report_path(run_id), headers=headers, timeout=10)
        assert answer.status_code == 403, (run_id, answer.status_code, answer.text[:300])
        assert "ROLLED BACK" not in answer.text and "PROMOTED" not in answer.text
    other = requests.get(f"{airflow.url}/canary-releases/runs/{silent_dag}/no_such_run", headers=headers, timeout=10)
    assert other.status_code == 404, other.text[:300]  # allowed in: that DAG just has no such run
    # The index lists only what the viewer may read, and says that something is left out.
    index = requests.get(airflow.url + "/canary-releases/", headers=headers, timeout=30)
    assert index.status_code == 200, index.text[:300]
    assert f'data-release="{SILENT}"' in index.text and f'data-release="{RELEASE}"' not in index.text
    assert "1 more release(s) you may not read" in index.text
    assert not any(run_id in index.text for run_id in runs.values())


def test_admin_reads_the_report_and_the_index(airflow, runs, demo_stack):
    headers = {"Authorization": f"Bearer {token(airflow, 'admin')}"}
    answer = requests.get(airflow.url + report_path(runs["rolled_back"]), headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/html")
    assert 'class="outcome ROLLED BACK"' in answer.text
    assert "gate_10" in answer.text and 'data-check="errors"' in answer.text
    missing = requests.get(airflow.url + report_path("no_such_run"), headers=headers, timeout=10)
    assert missing.status_code == 404
    index = requests.get(airflow.url + "/canary-releases/", headers=headers, timeout=30)
    assert index.status_code == 200, index.text[:500]
    row = index.text[index.text.index(f'data-release="{RELEASE}"'):]
    row = row[:row.index("</tr>")]
    assert "promoted" in row  # the status record's phase after the last run
    assert "stable 100%, canary 0%" in row  # read from HAProxy now
    assert runs["rolled_back"] in row and runs["promoted"] in row


def test_index_says_when_the_router_is_unreachable(airflow, runs):
    """The second spec's router is a socket that accepts and never answers: its row says "router
    unreachable" once the time limit is over, and the page does not hang on it."""
    headers = {"Authorization": f"Bearer {token(airflow, 'admin')}"}
    started = time.monotonic()
    index = requests.get(airflow.url + "/canary-releases/", headers=headers, timeout=30)
    took = time.monotonic() - started
    row = index.text[index.text.index(f'data-release="{SILENT}"'):]
    row = row[:row.index("</tr>")]
    assert "router unreachable" in row, row
    assert "router unreachable" not in index.text[index.text.index(f'data-release="{RELEASE}"'):].split("</tr>")[0]
    assert took < 15, f"the index took {took:.1f}s"


# ---------------------------------------------------------------------------------------------
# In a real browser


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("Debian's chromium is not installed (make test installs it through include/scripts/install_packages.sh)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=BROWSER_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report-screenshots")


def log_in(browser, airflow: AirflowServices, user: str):
    """A browser page logged in through Airflow's own login form."""
    password = json.loads(airflow.password_file.read_text())[user]
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.goto(airflow.url + "/", wait_until="networkidle")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"), timeout=30_000)
    assert any(c["name"] == "_token" for c in context.cookies()), "no session cookie after logging in"
    return page


def open_report_tab(page, airflow: AirflowServices, run_id: str):
    """The DAG run page's "Canary report" tab; returns the report's frame."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}", wait_until="networkidle")
    tab = page.get_by_role("tab", name=re.compile("Canary report")).or_(page.get_by_role("link", name=re.compile("Canary report"))).first
    # The UI may re-render its tabs once the plugins' views have loaded, and a click on the first
    # render is then lost (seen once on a busy machine): click again if no report frame comes.
    for attempt in range(3):
        tab.click()
        try:
            page.wait_for_selector("iframe[title='Canary report']", timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    frame = page.frame_locator("iframe[title='Canary report']")
    frame.locator("#outcome").wait_for(timeout=30_000)
    return frame


def test_browser_shows_a_rolled_back_run_in_its_tab(browser, airflow, runs, screenshots):
    page = log_in(browser, airflow, "admin")
    frame = open_report_tab(page, airflow, runs["rolled_back"])
    assert frame.locator("#outcome").inner_text() == "ROLLED BACK"
    assert "gate_10 at 10%" in frame.locator("#decided-by").inner_text()
    assert frame.locator("#rollback-latency").inner_text().endswith("ms")
    assert frame.locator("svg.weight-chart polyline").count() == 2  # set, and read back
    plot = frame.locator("figure.check-plot[data-check=errors] svg")
    assert plot.locator("polyline").count() >= 2 and plot.locator("line.marker").count() >= 1
    rows = frame.locator("table.decisions tr")
    assert rows.count() >= 2 and "ROLLBACK" in rows.last.inner_text()
    page.screenshot(path=str(screenshots / "rolled_back_tab.png"), full_page=True)
    # A task's log opens in the whole window (the tab's frame is sandboxed against that: see pages.TOP_LINKS).
    frame.locator("table.tasks a", has_text="gate_10").click()
    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/.+/tasks/gate_10"), timeout=30_000)
    page.goto(airflow.url + report_path(runs["rolled_back"]), wait_until="load")  # the report as a page of its own
    page.screenshot(path=str(screenshots / "rolled_back_report.png"), full_page=True)
    page.context.close()


def test_browser_shows_a_promoted_run_in_its_tab(browser, airflow, runs, screenshots):
    page = log_in(browser, airflow, "admin")
    frame = open_report_tab(page, airflow, runs["promoted"])
    assert frame.locator("#outcome").inner_text() == "PROMOTED"
    assert frame.locator("#rollback-latency").inner_text().startswith("-")
    assert frame.locator("figure.check-plot svg polyline").count() >= 2
    assert "ADVANCE" in frame.locator("table.decisions tr").last.inner_text()
    page.screenshot(path=str(screenshots / "promoted_tab.png"), full_page=True)
    # The report as a page of its own.
    page.goto(airflow.url + report_path(runs["promoted"]), wait_until="load")
    page.screenshot(path=str(screenshots / "promoted_report.png"), full_page=True)
    # The nav's "Canary releases" entry: the index inside the UI, each run linking to its report.
    page.goto(airflow.url + "/plugin/canary-releases", wait_until="networkidle")
    index = page.frame_locator("iframe[title='Canary releases']")
    row = index.locator(f"tr.release[data-release={RELEASE}]")
    row.wait_for(timeout=30_000)
    assert "stable 100%, canary 0%" in row.inner_text()
    row.locator("a", has_text=runs["rolled_back"]).click()
    assert index.locator("#outcome").inner_text(timeout=30_000) == "ROLLED BACK"
    page.screenshot(path=str(screenshots / "index_nav.png"), full_page=True)
    page.context.close()


def test_browser_user_without_access_gets_403(browser, airflow, runs, screenshots):
    page = log_in(browser, airflow, VIEWER)
    answer = page.goto(airflow.url + report_path(runs["rolled_back"]))
    assert answer.status == 403, answer.text()[:300]
    page.screenshot(path=str(screenshots / "viewer_403.png"))
    page.context.close()
