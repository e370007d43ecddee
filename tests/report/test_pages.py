"""The report's pages from literal data: the gate record part A's gates push (tests/data/looks_sample.json),
and the unhappy cases: no looks, a check with no data, huge values, HTML where text belongs."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from canary_operators.report import charts, pages
from canary_operators.report.model import ReleaseRow, RunReport, RunRow, TaskRow

SAMPLE = json.loads((Path(__file__).resolve().parents[1] / "data" / "looks_sample.json").read_text())
START = SAMPLE["shifted_at"] - 20
LINKS = pages.Links(airflow="", app="/canary-releases")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def rolled_back(gate_record=SAMPLE, **changes) -> RunReport:
    tasks = (TaskRow("preflight", "success", 1, START, START + 2), TaskRow("shift_to_5", "success", 1, START + 15, START + 20),
             TaskRow(gate_record.get("gate", "gate_5"), "failed", 1, START + 20, START + 56),
             TaskRow("promote", "upstream_failed", 0, None, None), TaskRow("rollback", "success", 1, START + 57, START + 58))
    xcoms = {"preflight": {"return_value": {"version": "v3", "stable_version": "v2"}},
             "shift_to_5": {"return_value": {"weight": 5, "shifted_at": SAMPLE["shifted_at"]}},
             "gate_5": {"looks": gate_record, "fast_rollback": {"reason": "gate_5: errors", "weight_before": 5,
                                                                "weight_after": 0, "seconds_to_stable": 0.012}},
             "rollback": {"return_value": {"canary_weight": 0, "traffic_changed": True, "reason": "gate_5 failed",
                                           "seconds_to_stable": 0.2}}}
    fields = dict(dag_id="canary_web", run_id="ci__v3__abc", release="web", state="failed", start=START, end=START + 60,
                  version="v3", stable_version="v2", run_type="manual", triggered_by="admin",
                  gates=(gate_record,), xcoms=xcoms, tasks=tasks,
                  note="ROLLED BACK v3 at 5% after 35 s: errors 3.23% vs 0.24% (+2.99 pp > 0.5 pp)")
    fields.update(changes)
    return RunReport(**fields)


def test_rolled_back_run_has_header_plots_and_decision_table():
    report = rolled_back()
    html = pages.render_run(report, LINKS)
    page = Tags(html)
    text = " ".join(page.text)
    assert report.outcome() == "ROLLED BACK"
    assert page.all("span", id="outcome") and "ROLLED BACK" in text
    assert "v3" in text and "stable v2" in text
    decided = report.decided_by()
    assert decided.startswith("gate_5 at 5%, 35s after the shift: errors: error rate 3.23% vs baseline 0.24%"), decided
    assert "12 ms" in text  # the gate's own reset to stable, not the undo's 200 ms
    assert "60 s" in text  # duration
    assert not page.all("span", id="status")  # the status record belongs to another run
    owned = pages.render_run(rolled_back(status={"run_id": "ci__v3__abc", "phase": "rolled_back", "weight": 0,
                                                 "decision": "rollback: <gate_5>"}), LINKS)
    assert '<span id="status">rolled_back, canary 0%: rollback: &lt;gate_5&gt;</span>' in owned
    # One plot per check, and the weight over time.
    figures = page.all("figure", **{"class": "check-plot"})
    assert [f["data-check"] for f in figures] == ["errors", "p99_latency"]
    assert len(page.all("svg", **{"class": "chart weight-chart"})) == 1
    # The decision table: one row per look, the last one the rollback.
    table = html[html.index('<table class="decisions">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + len(SAMPLE["looks"])
    assert "ROLLBACK" in table and "3.23% vs 0.244%" in table
    # Links to each task's log in Airflow's UI, opened in the whole window.
    logs = [a["href"] for a in page.all("a", target="_top") if "/tasks/" in a["href"]]
    assert "/dags/canary_web/runs/ci__v3__abc/tasks/gate_5?try_number=1" in logs


def test_check_plot_has_bounds_threshold_and_the_verdict_moment():
    plot = next(p for p in charts.gate_plots(SAMPLE) if p.check == "errors")
    assert plot.verdict == "fail" and plot.decided_at == 35.0
    assert plot.threshold == "canary - baseline <= 0.5 pp"
    names = [s.name for s in plot.chart.series]
    assert names == ["canary errors", "baseline errors", "fail above", "pass below"]
    assert [b.name for b in plot.chart.bands] == ["baseline rate (anytime-valid)"]
    assert [m.label for m in plot.chart.markers] == ["errors fail at 35s"]  # the verdict was the gate's decision
    latency = next(p for p in charts.gate_plots(SAMPLE) if p.check == "p99_latency")
    assert {b.name for b in latency.chart.bands} == {"canary p99 (anytime-valid)", "baseline p99 (anytime-valid)"}
    # Passing from look 2 on, the gate's rollback at 35 s is marked apart.
    assert [m.label for m in latency.chart.markers] == ["p99_latency pass at 20s", "ROLLBACK"]


def test_weight_over_time_set_and_read_back():
    chart = charts.weight_chart(rolled_back().weight_points(), START)
    set_line, read_line = chart.series
    assert [y for _, y in set_line.points] == [0, 5, 0, 0]
    assert [y for _, y in read_line.points] == [5, 0, 0]
    assert [m.label for m in chart.markers] == ["rollback (gate_5)"]


def test_promoted_run_names_its_approver():
    advancing = copy.deepcopy(SAMPLE)
    advancing["looks"][-1]["outcome"] = "advance"
    advancing["looks"][-1]["reason"] = "every check passes"
    report = rolled_back(advancing, state="success", note="PROMOTED v3 in 1m00s, approved by alice",
                         xcoms={"approve_100": {"return_value": {"approved": "Promote", "asked": True, "by": "alice"}},
                                "gate_5": {"looks": advancing}})
    assert report.outcome() == "PROMOTED"
    assert report.decided_by() == "approved by alice"
    assert report.rollback_latency() is None
    html = pages.render_run(report, LINKS)
    assert 'class="outcome PROMOTED"' in html and "approved by alice" in html


def test_no_looks_at_all():
    report = rolled_back(gates=(), xcoms={"rollback": {"return_value": {"traffic_changed": False, "reason": "preflight failed: canary at 10%"}}},
                         note=None)
    assert report.outcome() == "FAILED"  # nothing moved: not a rollback
    assert report.decided_by() == "preflight failed: canary at 10%"
    html = pages.render_run(report, LINKS)
    assert 'id="no-looks"' in html and "check-plot" not in html
    assert Tags(html).all("span", id="rollback-latency")
    empty = dict(SAMPLE, looks=[])
    html = pages.render_run(rolled_back(empty), LINKS)
    assert "This gate recorded no look." in html


def test_a_check_with_no_data_says_so():
    record = copy.deepcopy(SAMPLE)
    for look in record["looks"]:
        for c in look["checks"]:
            if c["check"] == "p99_latency":
                c.update(canary_value=None, baseline_value=None, bounds={}, verdict="no_data")
    plot = next(p for p in charts.gate_plots(record) if p.check == "p99_latency")
    html = pages.render_run(rolled_back(record), LINKS)
    figure = html[html.index('data-check="p99_latency"'):]
    figure = figure[:figure.index("</figure>")]
    assert "no data" in figure and "<polyline" not in figure and plot.verdict == "no_data"


def test_huge_values_render_with_finite_coordinates():
    record = copy.deepcopy(SAMPLE)
    look = record["looks"][-1]
    look["checks"][0].update(canary_value=1e308, baseline_value=-1e308, p_value=float("nan"),
                             bounds={"baseline_rate": [-1e308, 1e308], "fail_if_canary_above": float("inf")})
    html = pages.render_run(rolled_back(record), LINKS)
    coordinates = re.findall(r" (?:x|y|x1|x2|y1|y2|cx|cy)=\"([^\"]*)\"", html)
    assert coordinates and all(abs(float(v)) < 1e6 for v in coordinates)
    assert "nan" not in html.lower().replace("canary", "")


def test_html_in_a_reason_or_a_name_is_escaped():
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    record = copy.deepcopy(SAMPLE)
    record["looks"][-1]["reason"] = evil
    record["looks"][-1]["checks"][0]["reason"] = evil
    record["looks"][-1]["checks"][0]["check"] = evil
    record["queries"][evil] = {"canary": evil, "baseline": evil}
    report = rolled_back(record, note=evil, run_id=evil, triggered_by=evil, version=evil)
    html = pages.render_run(report, LINKS)
    page = Tags(html)
    assert len(page.all("script")) == 1 and not page.all("img")  # only the page's own script
    assert "<script>alert" not in html and "onerror=\"" not in html
    assert evil in " ".join(page.text)  # shown, as text
    # The run id goes into links URL-encoded.
    assert any("%3Cimg%20src%3Dx" in a["href"] for a in page.all("a"))


def test_index_lists_releases_with_phase_weight_router_and_last_runs():
    rows = [ReleaseRow("web", "canary_web", phase="gating", status_weight=5, decision="gate_5: hold",
                       router="stable 95%, canary 5%", router_ok=True,
                       runs=tuple(RunRow(f"run_{i}", "failed" if i else "running", START + i) for i in range(10))),
            ReleaseRow("api", "canary_api", router="router unreachable: connection refused", router_ok=False,
                       runs=(RunRow("r1", "success", START, "PROMOTED v7 in 2m00s"),)),
            ReleaseRow("broken", "canary_broken__invalid", error="broken.yaml: steps: <b>bad</b>")]
    html = pages.render_index(rows, LINKS, hidden=2)
    page = Tags(html)
    text = " ".join(page.text)
    assert [r["data-release"] for r in page.all("tr", **{"class": "release"})] == ["web", "api"]
    assert "router unreachable: connection refused" in text and "PROMOTED v7 in 2m00s" in text
    assert len([a for a in page.all("a") if a["href"].startswith("/canary-releases/runs/canary_web/")]) == 10
    assert "<b>bad</b>" not in html and "steps: <b>bad</b>" in text
    assert "2 more release(s)" in text
    assert rows[0].last_outcome() == "FAILED" and rows[2].last_outcome() == "no finished run"


@pytest.mark.parametrize("root", ["", "/airflow"])
def test_links_work_under_a_base_path(root):
    links = pages.Links(airflow=root, app=root + "/canary-releases")
    assert links.task_log("canary_web", "manual__2026-11-30T10:00:00+00:00", "gate_5", 2) == (
        f"{root}/dags/canary_web/runs/manual__2026-11-30T10%3A00%3A00%2B00%3A00/tasks/gate_5?try_number=2")
    assert links.run_report("canary_web", "a/b") == f"{root}/canary-releases/runs/canary_web/a%2Fb"


def test_a_release_across_targets_gets_a_weight_line_per_target():
    tasks = (TaskRow("eu.shift_to_10", "success", 1, START + 5, START + 6), TaskRow("us.shift_to_10", "success", 1, START + 5, START + 7),
             TaskRow("eu.promote", "success", 1, START + 30, START + 31), TaskRow("us.promote", "success", 1, START + 30, START + 32))
    xcoms = {"eu.shift_to_10": {"return_value": {"weight": 10, "shifted_at": START + 6}},
             "us.shift_to_10": {"return_value": {"weight": 9, "shifted_at": START + 7}}}
    report = rolled_back(gates=(), xcoms=xcoms, tasks=tasks, state="success")
    chart = charts.weight_chart(report.weight_points(), START)
    assert [s.name for s in chart.series] == ["set (eu)", "read back from the router (eu)", "set (us)", "read back from the router (us)"]
    assert [y for _, y in chart.series[3].points] == [9, 0]  # us read back 9%, then 0 once promoted
    assert [m.label for m in chart.markers] == ["promoted eu", "promoted us"]
