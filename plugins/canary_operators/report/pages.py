"""The report's pages as HTML (pure). Every value from a run, a spec or a user is escaped here;
the SVG charts escape their own text. One self-contained page: no external file, and one small
script of our own (``TOP_LINKS``), no value in it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from canary_operators.report import charts, svg
from canary_operators.report.model import ReleaseRow, RunReport

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;margin:0;padding:16px 20px;background:#f8f9fa}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 8px} h3{font-size:14px;margin:14px 0 6px}
a{color:#1864ab} .muted{color:#868e96} code{font-size:12px}
.card{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:12px 16px;margin:0 0 12px}
.outcome{display:inline-block;font-weight:700;padding:2px 10px;border-radius:4px;color:#fff;background:#495057}
.outcome.PROMOTED{background:#2b8a3e} .outcome.ROLLED.BACK,.outcome.FAILED{background:#c92a2a}
dl.header{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:10px 0 0} dl.header dt{color:#495057}
dl.header dd{margin:0}
.charts{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:6px}
figcaption{font-size:12px;color:#495057;max-width:660px;padding:4px 4px 0}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border:1px solid #dee2e6;padding:4px 6px;text-align:left;vertical-align:top} th{background:#f1f3f5}
.v-pass{color:#2b8a3e;font-weight:600} .v-fail{color:#c92a2a;font-weight:700} .v-no_data,.v-inconclusive,.v-error{color:#e67700}
.o-rollback{color:#c92a2a;font-weight:700} .o-advance{color:#2b8a3e;font-weight:600} .o-hold{color:#495057}
.s-success{color:#2b8a3e} .s-failed,.s-upstream_failed{color:#c92a2a} .s-running,.s-deferred,.s-queued{color:#1864ab}
.warn{color:#c92a2a;font-weight:600} ul.runs{margin:0;padding-left:16px}
"""


# Links to Airflow's pages open in the whole window, not inside the report's frame. The UI shows
# the report in an iframe sandboxed without allow-top-navigation, where target=_top is blocked; the
# frame is same-origin, so a link placed in the top document (and clicked there) navigates it.
TOP_LINKS = """
document.addEventListener("click", function (event) {
  var link = event.target.closest("a[target=_top]");
  if (!link || window.top === window) return;
  try {
    var proxy = window.top.document.createElement("a");
    proxy.href = link.href;
    window.top.document.body.appendChild(proxy);
    proxy.click();
    proxy.remove();
    event.preventDefault();
  } catch (error) {}  // not same-origin: the browser's own rules apply
});
"""


@dataclass(frozen=True)
class Links:
    """Where things are: ``airflow`` is Airflow's UI root ("" at the host's root), ``app`` this app's root."""

    airflow: str = ""
    app: str = "/canary-releases"

    def run_report(self, dag_id: str, run_id: str) -> str:
        return f"{self.app}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"

    def dag(self, dag_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}"

    def run(self, dag_id: str, run_id: str) -> str:
        return f"{self.dag(dag_id)}/runs/{quote(run_id, safe='')}"

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 0) -> str:
        url = f"{self.run(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
        return url + (f"?try_number={try_number}" if try_number else "")


def e(value) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return escape("" if value is None else str(value), quote=True)


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def latency_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{body}<script>{TOP_LINKS}</script></body></html>")


def a(href: str, text, target_top: bool = False) -> str:
    # Airflow's pages open in the whole window, not inside the report's frame.
    return f'<a href="{e(href)}"{" target=_top" if target_top else ""}>{e(text)}</a>'


# -- the run report ---------------------------------------------------------------------------------

def render_run(report: RunReport, links: Links) -> str:
    outcome = report.outcome()
    version = report.version or "?"
    stable = report.stable_version or "?"
    header = [
        ("service", e(report.release)),
        ("version", f"<b>{e(version)}</b> → stable {e(stable)}"),
        ("outcome", f'<span class="outcome {e(outcome)}" id="outcome">{e(outcome)}</span>'
                    + (f' <span id="note">{e(report.note.splitlines()[0])}</span>' if report.note else "")),
        ("decided by", f'<span id="decided-by">{e(report.decided_by()) or "-"}</span>'),
        ("duration", f"{duration_text(report.duration)} (started {e(when(report.start))})"),
        ("rollback latency", f'<span id="rollback-latency">{e(latency_text(report.rollback_latency()))}</span>'
                             '<span class="muted"> from the failing verdict to the canary read back at 0%</span>'),
        *([("status record", f'<span id="status">{e(report.status.get("phase"))}, canary '
                             f'{e(report.status.get("weight"))}%: {e(report.status.get("decision"))}</span>')]
          if report.status else []),
        ("run", f"{a(links.run(report.dag_id, report.run_id), report.run_id, True)} "
                f'<span class="muted">({e(report.run_type)}{", by " + e(report.triggered_by) if report.triggered_by else ""})</span>'),
    ]
    parts = [f'<div class="card"><h1>Canary release of {e(report.release)}: {e(version)}</h1>'
             f'<div class="muted">{a(links.app + "/", "all canary releases")} · '
             f'{a(links.dag(report.dag_id), report.dag_id, True)}</div>'
             '<dl class="header" id="header">'
             + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in header) + "</dl></div>"]
    points = report.weight_points()
    parts.append('<h2>Traffic to the canary</h2><div class="charts"><figure>'
                 + svg.render(charts.weight_chart(points, report.start or 0.0))
                 + "<figcaption>Dashed: the weight each step set. Solid: the weight read back from the router "
                 "after the change.</figcaption></figure></div>")
    if not report.gates:
        parts.append('<div class="card muted" id="no-looks">No gate recorded any look in this run '
                     "(it ended before a gate, was a dry run, or ran before looks were recorded).</div>")
    for record in report.gates:
        parts.append(render_gate(report, record, links))
    parts.append(render_tasks(report, links))
    return page(f"{report.release} {version}: {outcome}", "".join(parts))


def render_gate(report: RunReport, record: dict, links: Links) -> str:
    gate = str(record.get("gate") or "gate")
    decision = charts.decision_look(record) or {}
    said = "no decision recorded"
    if decision:
        at = svg.finite(decision.get("t")) or 0.0
        said = (f'<span class="o-{e(decision.get("outcome"))}">{e(str(decision.get("outcome", "")).upper())}</span> '
                f"at {at:.0f}s: {e(decision.get('reason'))}")
    dropped = int(record.get("dropped") or 0)
    parts = [f'<section class="gate" id="gate-{e(gate)}"><h2>{e(gate)} at {e(record.get("weight"))}% '
             f'<span class="muted">({a(links.task_log(report.dag_id, report.run_id, gate), "log", True)})</span></h2>'
             f"<p>{said}</p>"]
    plots = charts.gate_plots(record)
    if plots:
        parts.append('<div class="charts">')
        for p in plots:
            caption = [f'<b>{e(p.check)}</b> ({e(p.kind)}): <span class="v-{e(p.verdict)}">{e(p.verdict)}</span>']
            if p.threshold:
                caption.append(f"threshold <code>{e(p.threshold)}</code>")
            if p.statistic:
                caption.append(e(p.statistic))
            caption.append(e(p.reason))
            parts.append(f'<figure class="check-plot" data-check="{e(p.check)}">{svg.render(p.chart)}'
                         f"<figcaption>{' · '.join(caption)}</figcaption></figure>")
        parts.append("</div>")
    parts.append(render_looks_table(record))
    if dropped:
        parts.append(f'<p class="muted">{dropped} looks were thinned out of this long gate; the first, the last '
                     "and every change of verdict are kept.</p>")
    queries = record.get("queries") or {}
    if queries:
        parts.append("<details><summary>queries</summary><table><tr><th>check</th><th>canary</th><th>baseline</th></tr>"
                     + "".join(f"<tr><td>{e(name)}</td><td><code>{e((q or {}).get('canary'))}</code></td>"
                               f"<td><code>{e((q or {}).get('baseline'))}</code></td></tr>" for name, q in queries.items())
                     + "</table></details>")
    parts.append("</section>")
    return "".join(parts)


def check_cell(c: dict) -> str:
    unit = charts.unit_of(str(c.get("kind") or ""))
    values = f"{svg.format_value(unit, svg.finite(c.get('canary_value')))} vs {svg.format_value(unit, svg.finite(c.get('baseline_value')))}"
    n = svg.finite(c.get("canary_requests"))
    extra = f", n={n:.0f}" if n is not None else ""
    p = svg.finite(c.get("p_value"))
    extra += f", p={p:.3g}" if p is not None else ""
    return (f'<span class="v-{e(c.get("verdict"))}">{e(c.get("check"))} {e(c.get("verdict"))}</span>'
            f'<br><span class="muted">{e(values + extra)}</span>')


def render_looks_table(record: dict) -> str:
    looks = [lk for lk in record.get("looks") or [] if isinstance(lk, dict)]
    if not looks:
        return '<p class="muted no-looks">This gate recorded no look.</p>'
    rows = []
    for i, look in enumerate(looks, 1):
        checks = [c for c in look.get("checks") or [] if isinstance(c, dict)]
        t = svg.finite(look.get("t"))
        rows.append(f"<tr><td>{e(look.get('n', i))}</td><td>{e(f'{t:.0f}s' if t is not None else '-')}</td>"
                    f"<td>{e(look.get('weight'))}%</td>"
                    f'<td class="o-{e(look.get("outcome"))}">{e(str(look.get("outcome", "")).upper())}</td>'
                    f"<td>{'<br>'.join(check_cell(c) for c in checks) or '-'}</td><td>{e(look.get('reason'))}</td></tr>")
    return ('<table class="decisions"><tr><th>look</th><th>after</th><th>weight</th><th>outcome</th><th>checks</th>'
            "<th>reason</th></tr>" + "".join(rows) + "</table>")


def render_tasks(report: RunReport, links: Links) -> str:
    rows = "".join(
        f'<tr><td>{a(links.task_log(report.dag_id, report.run_id, t.task_id, t.try_number), t.task_id, True)}</td>'
        f'<td class="s-{e(t.state)}">{e(t.state or "-")}</td><td>{e(t.try_number)}</td>'
        f"<td>{e(when(t.start))}</td><td>{e(duration_text(t.end - t.start) if t.start and t.end else '-')}</td></tr>"
        for t in report.tasks)
    return ('<h2>Tasks and their logs</h2><table class="tasks"><tr><th>task (log)</th><th>state</th><th>try</th>'
            f"<th>started</th><th>took</th></tr>{rows}</table>")


# -- the index --------------------------------------------------------------------------------------

def render_index(rows: list[ReleaseRow], links: Links, hidden: int = 0) -> str:
    body = ['<div class="card"><h1>Canary releases</h1><div class="muted">Every release spec, its status record '
            "and what its router says now. A run's report opens from its id.</div></div>"]
    if not rows:
        body.append('<div class="card muted">No release you may read.</div>')
    table = []
    for r in rows:
        if r.error:
            table.append(f"<tr><td>{e(r.release)}</td><td colspan=5 class=warn>spec does not load: {e(r.error)}</td></tr>")
            continue
        weight = "-" if r.status_weight is None else f"{r.status_weight}%"
        router = f'<span class="{"" if r.router_ok else "warn"}">{e(r.router)}</span>'
        runs = "".join(f'<li>{a(links.run_report(r.dag_id, run.run_id), run.run_id)} '
                       f'<span class="s-{e(run.state)}">{e(run.state)}</span> <span class="muted">{e(when(run.start))}'
                       f'{" · " + e(run.note.splitlines()[0]) if run.note else ""}</span></li>' for run in r.runs)
        table.append(f'<tr class="release" data-release="{e(r.release)}"><td><b>{e(r.release)}</b><br>'
                     f'{a(links.dag(r.dag_id), r.dag_id, True)}</td>'
                     f"<td>{e(r.phase)}<br><span class=muted>{e(r.decision[:200])}</span></td>"
                     f"<td>{e(weight)}</td><td>{router}</td><td>{e(r.last_outcome())}</td>"
                     f'<td><ul class="runs">{runs or "<li class=muted>no runs</li>"}</ul></td></tr>')
    if table:
        body.append('<table class="releases"><tr><th>release</th><th>phase (status record)</th><th>weight recorded</th>'
                    "<th>router now</th><th>last outcome</th><th>last 10 runs</th></tr>" + "".join(table) + "</table>")
    if hidden:
        body.append(f'<p class="muted">{hidden} more release(s) you may not read are not shown.</p>')
    return page("Canary releases", "".join(body))
