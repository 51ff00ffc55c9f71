#!/usr/bin/env python3
"""Generates the Grafana dashboards under templates/stack/CONFIG_DIR/grafana/dashboards/.

Run after editing: python3 templates/tools/gen_dashboards.py. The JSON is committed (it is what
init copies verbatim); this script only keeps the five dashboards consistent. Every query
matches both HTTP semantic-convention generations (seconds / milliseconds) and only metric
names the OpenTelemetry agents emit through the collector's prometheus exporter (no namespace,
unit suffixes added).
"""
import json
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "stack", "CONFIG_DIR", "grafana", "dashboards")
DS = {"type": "prometheus", "uid": "obs-prometheus"}
NEW = "http_server_request_duration_seconds"
OLD = "http_server_duration_milliseconds"
RI = "$__rate_interval"


def req(sel="", by="job"):
    return (f'sum by ({by}) (rate({NEW}_count{{job=~"$job"{sel}}}[{RI}])) '
            f'or sum by ({by}) (rate({OLD}_count{{job=~"$job"{sel}}}[{RI}]))')


def err(by="job"):
    return (f'sum by ({by}) (rate({NEW}_count{{job=~"$job", http_response_status_code=~"5.."}}[{RI}])) '
            f'or sum by ({by}) (rate({OLD}_count{{job=~"$job", http_status_code=~"5.."}}[{RI}]))')


def quant(q, by="job"):
    return (f'histogram_quantile({q}, sum by ({by}, le) (rate({NEW}_bucket{{job=~"$job"}}[{RI}]))) '
            f'or histogram_quantile({q}, sum by ({by}, le) (rate({OLD}_bucket{{job=~"$job"}}[{RI}]))) / 1000')


class Board:
    def __init__(self, uid, title, description, job_query):
        self.uid, self.title, self.description = uid, title, description
        self.job_query = job_query
        self.panels = []
        self.y = 0
        self.x = 0

    def row(self, title):
        if self.x:
            self.y += 8
            self.x = 0
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, unit="short", kind="timeseries", w=12, h=8, description="", legend=None):
        if self.x + w > 24:
            self.x = 0
            self.y += h
        p = {
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [],
        }
        for i, t in enumerate(targets):
            expr, leg = t if isinstance(t, tuple) else (t, legend or "{{job}}")
            tgt = {"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": leg}
            if kind in ("table", "bargauge"):
                tgt["instant"] = True
                tgt["format"] = "table" if kind == "table" else "time_series"
            p["targets"].append(tgt)
        if kind == "table":
            p["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        self.panels.append(p)
        self.x += w
        if self.x >= 24:
            self.x = 0
            self.y += h

    def json(self):
        for i, p in enumerate(self.panels):
            p["id"] = i + 1
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["obs-stack"],
            "timezone": "browser",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [{
                "name": "job", "label": "service", "type": "query", "datasource": DS,
                "query": {"query": self.job_query, "refId": "job"},
                "definition": self.job_query,
                "includeAll": True, "multi": True, "allValue": ".+",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "refresh": 2, "sort": 1,
            }]},
            "annotations": {"list": []},
            "panels": self.panels,
        }


def http_red():
    b = Board("obs-http-red", "HTTP services: RED overview",
              "Rate, errors and duration of every instrumented HTTP service (OpenTelemetry HTTP server metrics).",
              f'label_values({{__name__=~"{NEW}_count|{OLD}_count"}}, job)')
    b.row("Rate and errors")
    b.panel("Requests per second", [req()], unit="reqps", description="All HTTP requests served, per service.")
    b.panel("Error ratio (5xx)", [f"100 * (({err()}) or ({req()}) * 0) / ({req()})"], unit="percent",
            description="Share of requests answered with a 5xx status.")
    b.panel("Responses by status code", [
        (f'sum by (job, http_response_status_code) (rate({NEW}_count{{job=~"$job"}}[{RI}]))',
         "{{job}} {{http_response_status_code}}"),
        (f'sum by (job, http_status_code) (rate({OLD}_count{{job=~"$job"}}[{RI}]))', "{{job}} {{http_status_code}}"),
    ], unit="reqps", w=24)
    b.row("Duration")
    b.panel("Latency p50", [quant(0.5)], unit="s", w=8)
    b.panel("Latency p95", [quant(0.95)], unit="s", w=8)
    b.panel("Latency p99", [quant(0.99)], unit="s", w=8)
    b.row("Routes")
    b.panel("Top routes by traffic", [
        (f'topk(10, {req(by="job, http_route")})', "{{job}} {{http_route}}")], unit="reqps", kind="table")
    b.panel("Slowest routes (p95)", [
        (f'topk(10, {quant(0.95, by="job, http_route")})', "{{job}} {{http_route}}")], unit="s", kind="table")
    b.panel("Errors by route", [
        (f'topk(10, {err(by="job, http_route")})', "{{job}} {{http_route}}")], unit="reqps", w=24)
    b.row("Alerts")
    b.panel("Firing alerts", [('ALERTS{alertstate="firing"}', "{{alertname}} {{job}}")], kind="table", w=24)
    return b


def python():
    b = Board("obs-python", "Python runtime",
              "CPython processes instrumented by the OpenTelemetry Python agent (system-metrics instrumentation).",
              'label_values(target_info{telemetry_sdk_language="python"}, job)')
    # system-metrics emits both the process.* semantic conventions and the older
    # process.runtime.cpython.* names: prefer the former, fall back to the latter, never add both.
    b.row("Process")
    b.panel("Memory (RSS)", [
        ('max by (job) (process_memory_usage_bytes{job=~"$job"}) '
         'or max by (job) (process_runtime_cpython_memory_bytes{job=~"$job", type="rss"})', "{{job}}")],
        unit="bytes")
    b.panel("CPU", [
        (f'sum by (job) (rate(process_cpu_time_seconds_total{{job=~"$job"}}[{RI}])) '
         f'or sum by (job) (rate(process_runtime_cpython_cpu_time_seconds_total{{job=~"$job"}}[{RI}]))', "{{job}}")],
        unit="percentunit")
    b.panel("Garbage collections", [
        (f'sum by (job) (rate(cpython_gc_collections_total{{job=~"$job"}}[{RI}])) '
         f'or sum by (job) (rate(process_runtime_cpython_gc_count_bytes_total{{job=~"$job"}}[{RI}]))', "{{job}}")],
        unit="ops")
    b.panel("Threads", [
        ('max by (job) (process_thread_count{job=~"$job"}) '
         'or max by (job) (process_runtime_cpython_thread_count{job=~"$job"})', "{{job}}")])
    b.row("HTTP")
    b.panel("Requests per second", [req()], unit="reqps")
    b.panel("Latency p95", [quant(0.95)], unit="s")
    return b


def nodejs():
    b = Board("obs-nodejs", "Node.js runtime",
              "Node.js processes instrumented by the OpenTelemetry Node.js agent (runtime-node instrumentation).",
              'label_values(target_info{telemetry_sdk_language="nodejs"}, job)')
    b.row("Event loop")
    b.panel("Event loop delay", [
        ('max by (job) (nodejs_eventloop_delay_p50_seconds{job=~"$job"})', "{{job}} p50"),
        ('max by (job) (nodejs_eventloop_delay_p99_seconds{job=~"$job"})', "{{job}} p99"),
        ('max by (job) (nodejs_eventloop_delay_max_seconds{job=~"$job"})', "{{job}} max")], unit="s")
    b.panel("Event loop utilization", [('max by (job) (nodejs_eventloop_utilization_ratio{job=~"$job"})', "{{job}}")],
            unit="percentunit")
    b.row("Memory and GC")
    b.panel("V8 heap used", [('sum by (job, v8js_heap_space_name) (v8js_memory_heap_used_bytes{job=~"$job"})',
                              "{{job}} {{v8js_heap_space_name}}")], unit="bytes")
    b.panel("GC time per second", [
        (f'sum by (job, v8js_gc_type) (rate(v8js_gc_duration_seconds_sum{{job=~"$job"}}[{RI}]))', "{{job}} {{v8js_gc_type}}")],
        unit="s")
    b.row("HTTP")
    b.panel("Requests per second", [req()], unit="reqps")
    b.panel("Latency p95", [quant(0.95)], unit="s")
    return b


def jvm():
    b = Board("obs-jvm", "JVM runtime",
              "Java processes instrumented by the OpenTelemetry Java agent (runtime-telemetry).",
              'label_values(target_info{telemetry_sdk_language="java"}, job)')
    b.row("Memory")
    b.panel("Heap used by pool", [('sum by (job, jvm_memory_pool_name) (jvm_memory_used_bytes{job=~"$job", jvm_memory_type="heap"})',
                                   "{{job}} {{jvm_memory_pool_name}}")], unit="bytes")
    b.panel("Heap used vs limit", [
        ('sum by (job) (jvm_memory_used_bytes{job=~"$job", jvm_memory_type="heap"})', "{{job}} used"),
        ('sum by (job) (jvm_memory_limit_bytes{job=~"$job", jvm_memory_type="heap"})', "{{job}} limit")], unit="bytes")
    b.row("GC, threads, CPU")
    b.panel("GC pause time per second", [
        (f'sum by (job, jvm_gc_name) (rate(jvm_gc_duration_seconds_sum{{job=~"$job"}}[{RI}]))', "{{job}} {{jvm_gc_name}}")],
        unit="s", w=8)
    b.panel("Threads", [('sum by (job) (jvm_thread_count{job=~"$job"})', "{{job}}")], w=8)
    b.panel("CPU", [('max by (job) (jvm_cpu_recent_utilization_ratio{job=~"$job"})', "{{job}}")], unit="percentunit", w=8)
    b.row("HTTP")
    b.panel("Requests per second", [req()], unit="reqps")
    b.panel("Latency p95", [quant(0.95)], unit="s")
    return b


def containers():
    b = Board("obs-containers", "Containers",
              "CPU, memory, network and restarts of every container (docker_stats), instrumented or not.",
              'label_values({__name__=~"container_memory_usage_total(_bytes)?"}, container_name)')
    # This board's variable selects containers, not services.
    b.panel("CPU", [('max by (container_name) ({__name__=~"container_cpu_utilization(_ratio)?", container_name=~"$job"})',
                     "{{container_name}}")], unit="percent")
    b.panel("Memory used", [('max by (container_name) ({__name__=~"container_memory_usage_total(_bytes)?", container_name=~"$job"})',
                             "{{container_name}}")], unit="bytes")
    b.panel("Memory used / limit", [('max by (container_name) ({__name__=~"container_memory_percent(_ratio)?", container_name=~"$job"})',
                                     "{{container_name}}")], unit="percent")
    b.panel("Restarts (last hour)", [('max by (container_name) (changes({__name__=~"container_restarts(_total)?", container_name=~"$job"}[1h]))',
                                      "{{container_name}}")])
    b.panel("Network received", [
        (f'sum by (container_name) (rate({{__name__=~"container_network_io_usage_rx_bytes(_total)?", container_name=~"$job"}}[{RI}]))',
         "{{container_name}}")], unit="Bps")
    b.panel("Network sent", [
        (f'sum by (container_name) (rate({{__name__=~"container_network_io_usage_tx_bytes(_total)?", container_name=~"$job"}}[{RI}]))',
         "{{container_name}}")], unit="Bps")
    return b


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, b in [("http-red", http_red()), ("python", python()), ("nodejs", nodejs()), ("jvm", jvm()),
                    ("containers", containers())]:
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(b.json(), f, indent=2, sort_keys=False)
            f.write("\n")


if __name__ == "__main__":
    main()
