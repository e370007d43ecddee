"""How many deferred gates one triggerer holds: N real ``MetricGateTrigger``s in one event loop.

    .venv/bin/python bench/gates.py                       # N = 50, 200, 500 at poke_interval 30 s (~7 min)
    .venv/bin/python bench/gates.py --gates 500 --periods 2
    .venv/bin/python bench/gates.py --as-before           # the same, with the old executor and HTTP use

Each N runs in a fresh process, the way the triggerer runs its triggers: one asyncio loop, each
trigger's ``run()`` a task, its blocking looks on the triggers' thread pool. The gates judge the
shipped ``include/releases/web.yaml`` (6 checks and the sample-ratio check: 20 distinct PromQL
queries a look) at 5% against a local Prometheus-compatible stub, in its own process (Prometheus
is another machine), which answers those queries the way Prometheus shapes them (vectors, bucket
series, matrices; a batch split back by its index label) after a lognormal delay per query
(median ``--query-ms``, sigma 0.6; a batch's queries one after another, which is pessimistic for
batches), with at most 20 requests evaluated at once (Prometheus' ``--query.max-concurrency``
default). The canary looks healthy and is never baked, so every gate holds and keeps looking.

The status record and the connections: in the triggerer, every ``Variable`` and connection read
or write of a look (the heartbeat's reads and write, the metrics and router connections) is a
message to the triggerer's supervisor process, which answers it through the in-process execution
API and the metadata database, one message at a time. Here the real SDK code sends those
messages through ``SUPERVISOR_COMMS`` the way ``TriggerCommsDecoder`` does (from the look's
thread onto the event loop, over a socket, answered to a reader task), to a supervisor stand-in
in the stub's process that answers one at a time, each after ``--comms-ms`` (default 5 ms: an
assumption for the API call and a local PostgreSQL, not a measurement). So the trigger process's
side of the status writes is measured; the supervisor's and the database's side is modelled, and
its busy share is printed (near 1.0 the supervisor, not this process, would be the limit).

Printed per N: the event loop's lag (a 100 ms sleep's overshoot, p50/p95/max), the look period
over ``poke_interval`` (from one look's start to the next; a look takes its own time and then
sleeps ``poke_interval``, so even an idle triggerer is a little above 1.0) at p50/p95/max, the
look's own duration and the status write's (p50/p95), the wait for a pool thread (p95), the
process's CPU (cores, and ms per look) and RSS per gate (RSS grown from just before the gates
were started, divided by N), the TCP connections the stub saw opened while measuring, the queries
a look made, the supervisor stand-in's busy share, and the machine's 1-minute load average (the
figures mean little on a machine whose other work leaves this process short of a core). The
target: p95 <= 1.10 at N = 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_N, TARGET_RATIO = 500, 1.10
CANARY, STABLE, WEIGHT = "v2", "v1", 5


# -- the Prometheus stub (its own process) ----------------------------------------------------

BATCHED = re.compile(r'label_replace\((.*?), "canary_operators_query", "(\d+)", "", ""\)(?: or |$)')


def answer_batch(query: str, path: str, params) -> tuple[dict, int]:
    """The answer to a request (a batch of the provider's queries, or one), and how many queries it held."""
    batch = BATCHED.findall(query)
    if not batch:
        return answer_promql(query, path, params), 1
    result = []
    for sub, index in batch:
        data = answer_promql(sub, path, params)
        result += [{**series, "metric": {**series["metric"], "canary_operators_query": index}} for series in data["result"]]
    return {"resultType": data["resultType"], "result": result}, len(batch)


def answer_promql(query: str, path: str, params) -> dict:
    """What Prometheus would answer to one of the provider's queries, for a healthy canary at 5%."""
    share = WEIGHT / 100 if f'version="{CANARY}"' in query else 1 - WEIGHT / 100
    requests = 20_000 * share
    if path.endswith("query_range"):
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        value = 0.2 if "cpu" in query else 2.0e8
        points = [[start + i * step, str(value * random.uniform(0.97, 1.03))] for i in range(int((end - start) // step) + 1)]
        return {"resultType": "matrix", "result": [{"metric": {}, "values": points}]}
    if query.startswith("vector(1)"):
        value = 1.0
    elif query.startswith("histogram_quantile(0.5"):
        value = 0.05
    elif query.startswith("histogram_quantile("):
        value = 0.2
    elif query.startswith("sum by (le)"):
        cumulative = [(0.01, 0.1), (0.025, 0.3), (0.05, 0.5), (0.1, 0.8), (0.25, 0.97), (0.5, 0.995), (1, 0.999)]
        result = [{"metric": {"le": str(le)}, "value": [params["time"], str(requests * share_le)]}
                  for le, share_le in cumulative]
        result.append({"metric": {"le": "+Inf"}, "value": [params["time"], str(requests)]})
        return {"resultType": "vector", "result": result}
    elif 'code=~"5.."' in query:
        value = requests * 0.001
    elif "checkouts_total" in query:
        value = requests * 0.1
    elif query.startswith("avg(rate("):
        value = 0.2
    elif query.startswith("avg(avg_over_time("):
        value = 2.0e8
    else:
        value = requests
    return {"resultType": "vector", "result": [{"metric": {}, "value": [params.get("time", "0"), str(value)]}]}


def serve_prometheus(query_ms: float, comms_ms: float) -> None:
    """Run the stub and the supervisor stand-in until killed; print their ports first.
    ``/stats``: connections opened, queries, the supervisor's messages and busy seconds."""
    from aiohttp import web

    stats = {"connections": 0, "queries": 0, "requests": 0}
    evaluating = asyncio.Semaphore(20)  # Prometheus' default --query.max-concurrency
    seen: set = set()

    async def query(request: web.Request) -> web.Response:
        client = request.transport.get_extra_info("peername")  # a new connection comes from a new port
        if client not in seen:
            seen.add(client)
            stats["connections"] += 1
        params = request.query if request.method == "GET" else await request.post()
        data, queries = answer_batch(params.get("query", ""), request.path, params)
        async with evaluating:  # a batch's queries are evaluated one after another, each its own time
            await asyncio.sleep(sum(min(1.0, random.lognormvariate(0, 0.6) * query_ms / 1000) for _ in range(queries)))
        stats["queries"] += queries
        stats["requests"] += 1
        return web.json_response({"status": "success", "data": data})

    async def main():
        app = web.Application()
        app.router.add_route("*", "/api/v1/query", query)
        app.router.add_route("*", "/api/v1/query_range", query)
        app.router.add_get("/stats", lambda request: web.json_response({**stats, **supervisor.stats}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        supervisor = Supervisor(comms_ms / 1000, {"prometheus_default": {"conn_type": "http", "host": "127.0.0.1", "port": port},
                                                  "haproxy_web": {"conn_type": "generic", "host": "127.0.0.1", "port": 9}})
        server = await asyncio.start_server(supervisor.serve, "127.0.0.1", 0, limit=1 << 24)
        print(port, server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the triggerer's side ---------------------------------------------------------------------

class SupervisorComms:
    """``SUPERVISOR_COMMS`` for the SDK's Variable and Connection calls, as the triggerer's
    ``TriggerCommsDecoder`` does it: a call from a thread hops onto the event loop, which writes the
    message to a socket and awaits the answer that a reader task hands back. The other end is
    the supervisor stand-in in the stub's process (``Supervisor``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int):
        self.loop, self.port, self.pending, self.ids = loop, port, {}, iter(range(1, 1 << 62))

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 24)
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self.reader.readline():
            frame = json.loads(line)
            self.pending.pop(frame["id"]).set_result(frame["answer"])

    def send(self, msg):
        return asyncio.run_coroutine_threadsafe(self.asend(msg), self.loop).result(timeout=120)

    async def asend(self, msg):
        from airflow.sdk.execution_time import comms

        frame_id = next(self.ids)
        answer = self.pending[frame_id] = self.loop.create_future()
        self.writer.write((json.dumps({"id": frame_id, "body": msg.model_dump(mode="json")}) + "\n").encode())
        body = await answer
        return None if body is None else getattr(comms, body.pop("type"))(**body)


class Supervisor:
    """The supervisor stand-in: answers one message at a time, each after ``service`` seconds (the
    real one calls the in-process execution API and the database); ``MaskSecret`` at once."""

    def __init__(self, service: float, connections: dict):
        self.service, self.connections, self.variables = service, connections, {}
        self.stats = {"busy_seconds": 0.0, "messages": 0}
        self.one_at_a_time = asyncio.Lock()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            frame = json.loads(line)
            writer.write((json.dumps({"id": frame["id"], "answer": await self.answer(frame["body"])}) + "\n").encode())

    async def answer(self, body: dict) -> dict | None:
        kind = body.get("type")
        if kind == "MaskSecret":
            return None
        async with self.one_at_a_time:
            started = time.monotonic()
            await asyncio.sleep(self.service)
            self.stats["busy_seconds"] += time.monotonic() - started
            self.stats["messages"] += 1
        if kind == "GetVariable":
            if body["key"] not in self.variables:
                return {"type": "ErrorResponse", "error": "VARIABLE_NOT_FOUND", "detail": {"key": body["key"]}}
            return {"type": "VariableResult", "key": body["key"], "value": self.variables[body["key"]]}
        if kind == "PutVariable":
            self.variables[body["key"]] = body["value"]
            return {"type": "OKResponse", "ok": True}
        if kind == "DeleteVariable":
            self.variables.pop(body["key"], None)
            return {"type": "OKResponse", "ok": True}
        if kind == "GetConnection":
            return {"type": "ConnectionResult", "conn_id": body["conn_id"], "schema": None, "login": None,
                    "password": None, "extra": None, **self.connections[body["conn_id"]]}
        return {"type": "ErrorResponse", "error": "GENERIC_ERROR", "detail": {"unanswered": kind}}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def as_before() -> None:
    """The old ways, for comparison: asyncio.to_thread's default pool, one query per request, one
    after another, and a new session (so new connections) for every look. (Answers shared by
    checks are still asked once, so a look makes 20 requests rather than the 24 it used to.)"""
    import canary_operators.clients.http as http
    import canary_operators.metrics.prometheus as prometheus
    import canary_operators.triggers.metric_gate as metric_gate

    metric_gate.in_thread = asyncio.to_thread
    prometheus.fetch_all = lambda calls: {key: _outcome(call) for key, call in calls.items()}
    prometheus.PrometheusProvider._fetch_batch = lambda self, calls: [prometheus._outcome(self._fetch, *c) for c in calls]
    http.shared_session = lambda endpoint, base, api_key_headers=None: http._new_session(endpoint, api_key_headers)


def _outcome(call):
    try:
        return call()
    except Exception as e:  # noqa: BLE001
        return e


async def run_gates(n: int, poke: float, periods: int, port: int, comms_port: int) -> dict:
    import canary_operators.operators.gate_evaluation as gate_evaluation
    from airflow.sdk.execution_time import task_runner
    from canary_operators.spec import RunConf, load_spec
    from canary_operators.status import ReleaseStatus, write_status
    import canary_operators.triggers.metric_gate as metric_gate
    from canary_operators.triggers.metric_gate import MetricGateTrigger

    loop = asyncio.get_running_loop()
    comms = SupervisorComms(loop, comms_port)
    await comms.connect()
    task_runner.SUPERVISOR_COMMS = comms
    base = load_spec(ROOT / "include" / "releases" / "web.yaml")

    looks: dict[str, list[tuple[float, float, str]]] = {}
    evaluate = gate_evaluation.evaluate_gate

    def timed_look(release, *args, **kwargs):
        started = time.monotonic()
        look = evaluate(release, *args, **kwargs)
        looks.setdefault(release.name, []).append((started, time.monotonic(), look.outcome.value))
        return look

    gate_evaluation.evaluate_gate = timed_look
    waits: list[tuple[float, str, float, float]] = []  # (called at, what, waited for a thread, ran)
    in_thread = metric_gate.in_thread

    async def timed_in_thread(fn, /, *args, **kwargs):
        called = time.monotonic()
        ran = []

        def timed():
            ran.append(time.monotonic())
            try:
                return fn(*args, **kwargs)
            finally:
                ran.append(time.monotonic())

        try:
            return await in_thread(timed)
        finally:
            if len(ran) == 2:
                waits.append((called, getattr(fn, "__name__", "?"), ran[0] - called, ran[1] - ran[0]))

    metric_gate.in_thread = timed_in_thread
    now = time.time()
    triggers = []
    for i in range(n):
        release = base.model_copy(update={"name": f"web-{i}", "gate_timeout": 6 * 86400.0})
        run = RunConf(release=release.name, version=CANARY, stable_version=STABLE, bake_time=6 * 86400.0)
        run_id = f"bench__{i}"
        await asyncio.to_thread(write_status, ReleaseStatus(release=release.name, phase="gating", run_id=run_id,
                                                             version=CANARY, stable_version=STABLE, weight=WEIGHT))
        triggers.append(MetricGateTrigger(release=release.model_dump(mode="json"), run=run.model_dump(mode="json"),
                                          weight=WEIGHT, shifted_at=now - 900, poke_interval=poke,
                                          rollout_started_at=now - 900, run_id=run_id, task_id=f"gate_{WEIGHT}",
                                          gate_timeout=6 * 86400.0, dag_id=f"canary_{release.name}"))
    # One look first, so imports and pools are in place before memory is read.
    first_release, first_run = triggers[0]._parsed()
    await asyncio.to_thread(evaluate, first_release, first_run, WEIGHT, now - 900, {})
    rss_before = rss_bytes()
    events: list[dict] = []

    async def gate(trigger, delay: float):
        await asyncio.sleep(delay)  # gates were deferred at different moments
        async for event in trigger.run():
            events.append(event.payload)
            return

    lags: list[float] = []

    async def watch_lag():
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.1)
            lags.append(time.monotonic() - started - 0.1)

    started = time.monotonic()
    tasks = [asyncio.create_task(gate(t, random.uniform(0, poke))) for t in triggers]
    watcher = asyncio.create_task(watch_lag())
    await asyncio.sleep(1.5 * poke)  # every gate started and looked at least once
    from_, cpu_from, lags_from = time.monotonic(), os.times(), len(lags)
    stub_from = await asyncio.to_thread(stub_stats, port)
    await asyncio.sleep(periods * poke)
    until, cpu_until = time.monotonic(), os.times()
    stub_until = await asyncio.to_thread(stub_stats, port)
    rss_after = rss_bytes()
    for task in tasks + [watcher]:
        task.cancel()
    await asyncio.gather(*tasks, watcher, return_exceptions=True)
    from canary_operators.triggers import threads

    # Looks under way finish while the loop still answers their messages (on our pool, or, as before, the default one).
    await asyncio.to_thread(threads.pool().shutdown, wait=True)
    await loop.shutdown_default_executor()

    ratios, durations, outcomes = [], [], {}
    for series in looks.values():
        for (s0, _, _), (s1, e1, outcome) in zip(series, series[1:]):
            if from_ <= s1 <= until:
                ratios.append((s1 - s0) / poke)
                durations.append(e1 - s1)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    window = until - from_
    thread_wait = [w for at, _, w, _ in waits if from_ <= at <= until]
    heartbeat = [r for at, what, _, r in waits if from_ <= at <= until and what == "heartbeat"]
    cpu = (cpu_until.user + cpu_until.system - cpu_from.user - cpu_from.system) / window
    n_looks = len(durations)
    return {
        "n": n, "poke_interval": poke, "load_average": round(os.getloadavg()[0], 1), "seconds": round(until - started, 1), "looks": n_looks,
        "outcomes": outcomes, "events": len(events), "event_reasons": sorted({str(e.get("reason"))[:80] for e in events}),
        "lag_ms": [round(1000 * percentile(lags[lags_from:], q), 1) for q in (50, 95)] + [round(1000 * max(lags[lags_from:], default=0), 1)],
        "ratio": [round(percentile(ratios, q), 3) for q in (50, 95)] + [round(max(ratios, default=float("nan")), 3)],
        "look_s": [round(percentile(durations, q), 3) for q in (50, 95)],
        "thread_wait_s": [round(percentile(thread_wait, q), 3) for q in (50, 95)],
        "heartbeat_s": [round(percentile(heartbeat, q), 3) for q in (50, 95)],
        "cpu_cores": round(cpu, 2), "cpu_ms_per_look": round(1000 * cpu * window / max(1, n_looks), 1),
        "rss_mb": round(rss_after / 2**20, 1), "kb_per_gate": round((rss_after - rss_before) / n / 1024, 1),
        "connections_opened": stub_until["connections"] - stub_from["connections"],
        "queries_per_look": round((stub_until["queries"] - stub_from["queries"]) / max(1, n_looks), 1),
        "requests_per_look": round((stub_until["requests"] - stub_from["requests"]) / max(1, n_looks), 1),
        "supervisor_busy": round((stub_until["busy_seconds"] - stub_from["busy_seconds"]) / window, 2),
        "messages_per_look": round((stub_until["messages"] - stub_from["messages"]) / max(1, n_looks), 1),
    }


def stub_stats(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
        return json.load(answer)


def one(args) -> None:
    """One N, in this process: print its figures as one JSON line."""
    home = tempfile.mkdtemp(prefix="gates-bench-")
    os.environ.update({"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__DAGS_FOLDER": home, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                       "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"})
    sys.path.insert(0, str(ROOT / "plugins"))
    import logging

    logging.getLogger("canary_operators").setLevel(logging.ERROR)  # a look logs one line; not the cost measured
    if args.as_before:
        as_before()
    result = asyncio.run(run_gates(args.one, args.poke_interval, args.periods, args.port, args.comms_port))
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gates", default="50,200,500", help="comma-separated N (default 50,200,500)")
    parser.add_argument("--poke-interval", type=float, default=30.0, help="seconds (default 30, the spec's default)")
    parser.add_argument("--periods", type=int, default=3, help="poke intervals measured after a 1.5-interval warm-up")
    parser.add_argument("--query-ms", type=float, default=15.0, help="the stub's median query time (default 15)")
    parser.add_argument("--comms-ms", type=float, default=5.0, help="the supervisor stand-in's time per message")
    parser.add_argument("--as-before", action="store_true", help="asyncio.to_thread, sequential queries, a session per look")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--comms-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-prometheus", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_prometheus:
        return serve_prometheus(args.query_ms, args.comms_ms)
    if args.one:
        return one(args)

    stub = subprocess.Popen([sys.executable, __file__, "--serve-prometheus", "--query-ms", str(args.query_ms),
                             "--comms-ms", str(args.comms_ms)], stdout=subprocess.PIPE, text=True)
    try:
        port, comms_port = map(int, stub.stdout.readline().split())
        mode = ("as before (asyncio.to_thread, one query per request one after another, a session per look)"
                if args.as_before else "now")
        print(f"Gates in one triggerer process ({mode}): web.yaml at {WEIGHT}%, poke_interval {args.poke_interval:g}s, "
              f"{args.periods} intervals measured; stub query median {args.query_ms:g} ms; supervisor stand-in "
              f"{args.comms_ms:g} ms/message; {os.cpu_count()} CPUs", flush=True)
        header = (f"{'N':>4} {'lag ms p50/95/max':>18} {'period/poke p50/95/max':>22} {'look s p50/95':>13} "
                  f"{'write s p50/95':>14} {'thread wait s p95':>17} {'CPU cores':>9} {'ms/look':>7} {'KB/gate':>7} "
                  f"{'conns':>5} {'q/req per look':>14} {'superv.':>7} {'load':>5}")
        print(header, flush=True)
        results = []
        for n in (int(x) for x in args.gates.split(",")):
            cmd = [sys.executable, __file__, "--one", str(n), "--port", str(port), "--comms-port", str(comms_port),
                   "--poke-interval", str(args.poke_interval), "--periods", str(args.periods)] + (["--as-before"] if args.as_before else [])
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{n:>5} failed:\n{done.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{n:>4} {'/'.join(f'{x:g}' for x in r['lag_ms']):>18} {'/'.join(f'{x:.2f}' for x in r['ratio']):>22} "
                  f"{'/'.join(f'{x:.2f}' for x in r['look_s']):>13} {'/'.join(f'{x:.2f}' for x in r['heartbeat_s']):>14} "
                  f"{r['thread_wait_s'][1]:>17.2f} {r['cpu_cores']:>9.2f} {r['cpu_ms_per_look']:>7.1f} "
                  f"{r['kb_per_gate']:>7.0f} {r['connections_opened']:>5} "
                  f"{str(r['queries_per_look']) + '/' + str(r['requests_per_look']):>14} "
                  f"{r['supervisor_busy']:>7.2f} {r['load_average']:>5.1f}", flush=True)
            if r["events"] or set(r["outcomes"]) - {"hold"}:
                print(f"      note: {r['events']} gates fired {r['event_reasons']}; look outcomes {r['outcomes']}", flush=True)
        at_target = next((r for r in results if r["n"] == TARGET_N), None)
        if at_target is None:
            print(f"target: not measured (N = {TARGET_N} was not run)")
        else:
            met = at_target["ratio"][1] <= TARGET_RATIO
            print(f"target: {TARGET_N} gates with look period p95 <= {TARGET_RATIO:.2f}x poke_interval: "
                  f"{'MET' if met else 'NOT MET'} (p95 {at_target['ratio'][1]:.2f}x; "
                  f"{at_target['kb_per_gate']:.0f} KB of RSS per gate, {at_target['rss_mb']:.0f} MB in all)", flush=True)
    finally:
        stub.kill()
        stub.wait()


if __name__ == "__main__":
    main()
