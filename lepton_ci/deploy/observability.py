"""From an environment's SLO declarations: a PrometheusRule (alerts) and a Grafana dashboard.

Both are rendered with the release (templates/k8s/prometheusrule.yaml.j2, dashboard.yaml.j2),
so what `lepton-ci watch` judges and what people look at come from one declaration. The
dashboard reads the metrics the server exports under `watch.metrics_prefix` (default: the
model name): `<p>_requests_total{path,code}`, `<p>_predict_seconds` (histogram),
`<p>_predictions_total{class}` and `<p>_model_info{version}`; CPU and memory come from the
kubelet's cAdvisor metrics of the pods. Drift is judged against the version's record, which
PromQL cannot see, so it has a dashboard panel and no alert rule.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lepton_ci.core.config import WatchConfig


def metric_prefix(model: str, watch: WatchConfig) -> str:
    return watch.metrics_prefix or re.sub(r"[^a-zA-Z0-9_]", "_", model)


def _camel(*parts: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", " ".join(parts))
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def rule_groups(model: str, env_name: str, watch: WatchConfig) -> list[dict[str, Any]]:
    """One alert per query SLO, firing after the same `for` the watcher acts on."""
    hold = f"{int(watch.for_ * watch.interval)}s"
    rules = []
    for s in watch.slos:
        if s.query is None:
            continue
        tests = []  # the bound exactly as the watcher uses it (`:g` would round 1234567)
        if s.max is not None:
            tests.append(f"({s.query}) > {s.max!r}")
        if s.min is not None:
            tests.append(f"({s.query}) < {s.min!r}")
        bound = " and ".join(
            b
            for b in (
                f">= {s.min:g}" if s.min is not None else "",
                f"<= {s.max:g}" if s.max is not None else "",
            )
            if b
        )
        rules.append(
            {
                "alert": _camel(model, env_name, s.name),
                "expr": " or ".join(tests),
                "for": hold,
                "labels": {
                    "severity": "critical" if watch.on_breach == "rollback" else "warning",
                    "model": model,
                    "environment": env_name,
                    "slo": s.name,
                },
                "annotations": {
                    "summary": f"{model} in {env_name}: SLO {s.name} out of bounds",
                    "description": f"{s.name} is {{{{ $value }}}}, bound {bound}. "
                    f"`lepton-ci watch {env_name}` acts on this ({watch.on_breach}).",
                },
            }
        )
    return [{"name": f"lepton-ci.{model}.{env_name}", "rules": rules}] if rules else []


def _panel(
    pid: int,
    title: str,
    exprs: list[tuple[str, str]],
    unit: str,
    x: int,
    y: int,
    kind: str = "timeseries",
    thresholds: list[float] | None = None,
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    steps += [{"color": "red", "value": t} for t in thresholds or []]
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if thresholds else "off"}},
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(65 + i), "expr": e, "legendFormat": legend}
            for i, (e, legend) in enumerate(exprs)
        ],
    }


def _appeared(title: str, series: str, by: str, color: str) -> dict[str, Any]:
    """A Grafana annotation wherever a new `by` value shows up in `series`."""
    return {
        "name": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "enable": True,
        "iconColor": color,
        "expr": f"count by ({by}) ({series}) unless count by ({by}) ({series} offset 2m)",
        "titleFormat": f"{title}: {{{{{by}}}}}",
        "step": "30s",
    }


def dashboard(
    model: str, env_name: str, name: str, namespace: str, watch: WatchConfig
) -> dict[str, Any]:
    p = metric_prefix(model, watch)
    label = next((s.drift.label for s in watch.slos if s.drift is not None), "class")
    mine = f'namespace="{namespace}", pod=~"{name}-.*"'
    pods = f'{mine}, container!="", container!="POD"'
    w = "[5m]"
    latency = [
        (f"histogram_quantile({q}, sum by (le) (rate({p}_predict_seconds_bucket{w})))", f"p{n}")
        for q, n in ((0.5, 50), (0.95, 95), (0.99, 99))
    ]
    panels = [
        _panel(
            1,
            "Version serving",
            [(f"max by (version) ({p}_model_info)", "{{version}}")],
            "none",
            0,
            0,
            kind="stat",
        ),
        _panel(
            2,
            "Requests by path and code",
            [(f"sum by (path, code) (rate({p}_requests_total{w}))", "{{path}} {{code}}")],
            "reqps",
            12,
            0,
        ),
        _panel(
            3,
            "Errors (5xx share)",
            [
                (
                    f'(sum(rate({p}_requests_total{{code=~"5.."}}{w})) or vector(0)) '
                    f"/ sum(rate({p}_requests_total{w}))",
                    "5xx",
                )
            ],
            "percentunit",
            0,
            8,
        ),
        _panel(4, "Latency percentiles", latency, "s", 12, 8),
        _panel(
            5,
            f"Predictions by {label}",
            [(f"sum by ({label}) (rate({p}_predictions_total{w}))", f"{{{{{label}}}}}")],
            "short",
            0,
            16,
        ),
        _panel(
            6,
            "CPU of the pods",
            [(f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods}}}{w}))", "{{pod}}")],
            "cores",
            12,
            16,
        ),
        _panel(
            7,
            "Memory of the pods",
            [(f"sum by (pod) (container_memory_working_set_bytes{{{pods}}})", "{{pod}}")],
            "bytes",
            0,
            24,
        ),
    ]
    for i, s in enumerate((s for s in watch.slos if s.query is not None), start=8):
        bounds = [b for b in (s.min, s.max) if b is not None]
        panels.append(
            _panel(
                i,
                f"SLO {s.name}",
                [(str(s.query), s.name)],
                "none",
                12 if i % 2 == 0 else 0,
                24 + 8 * ((i - 7) // 2),
                thresholds=bounds,
            )
        )
    return {
        "uid": f"lepton-{name}"[:40],
        "title": f"{model} · {env_name}",
        "tags": ["lepton-ci", model, env_name],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "annotations": {
            "list": [
                # Every deploy and every revert starts new pods serving a version: mark both.
                _appeared("deploys and reverts", f"{p}_model_info{{{mine}}}", "pod", "blue"),
                _appeared("version serving", f"{p}_model_info{{{mine}}}", "version", "orange"),
            ]
        },
        "panels": panels,
    }


def dashboard_json(model: str, env_name: str, name: str, namespace: str, watch: WatchConfig) -> str:
    return json.dumps(dashboard(model, env_name, name, namespace, watch), indent=1, sort_keys=True)
