"""contrib/grafana/email_gate_dashboard.json against a real Synapse's metrics endpoint:
every metric name its PromQL expressions (and its variables) use is served there,
read from the exposition itself rather than from a list kept by hand. Metrics do
not depend on the database: SQLite only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import http
from tests.harness.synapse import REPO_ROOT, SynapseServer
from tests.integration.helpers import ask

SYNAPSE_DATABASES = ["sqlite"]
DASHBOARD = REPO_ROOT / "contrib" / "grafana" / "email_gate_dashboard.json"

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2"})
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"$]*)"')


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: every identifier outside strings,
    label matchers, ranges and grouping clauses that is neither a function nor a keyword."""
    rest = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr))))
    names = set()
    for match in _IDENTIFIER.finditer(rest):
        if rest[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> tuple[list[str], set[str]]:
    """(every PromQL expression of the panels, the metrics the variables query)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    variables: set[str] = set()
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        if variable.get("type") == "query":
            variables |= set(_LABEL_VALUES.findall(text)) or metric_names(text)
    return exprs, variables


def exposed(synapse: SynapseServer) -> tuple[set[str], list[Any]]:
    """The metric names Synapse's metrics listener serves (families without a sample
    yet included, with the names their samples take), and every sample."""
    answer = http.get(f"http://127.0.0.1:{synapse.metrics_port}/_synapse/metrics")
    assert answer.status == 200, answer
    names: set[str] = set()
    samples = []
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count"),
    }
    for family in text_string_to_metric_families(answer.text):
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        for sample in family.samples:
            names.add(sample.name)
            samples.append(sample)
    return names, samples


def test_the_extractor_finds_metrics_and_skips_functions_labels_and_ranges() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{servlet="x",'
        'server_name=~"$server_name"}[$__rate_interval]))) / on (job) b_total offset 5m'
        " + sum without (reason) (increase(c_total[1h])) > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c_total"}


def test_every_metric_the_dashboard_uses_is_served_by_synapse(synapse: SynapseServer) -> None:
    assert ask(synapse, "grafana-check", "grafana@example.org").status == 202
    exprs, variables = dashboard_queries()
    used = set(variables)
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        used |= names
    # The dashboard covers the module's requests, outcomes, mail, tokens and latency.
    for needed in (
        "synapse_email_gate_requests_total",
        "synapse_email_gate_requests_processed_total",
        "synapse_email_gate_mail_queue_length",
        "synapse_email_gate_mails_failed_total",
        "synapse_email_gate_tokens_used_total",
        "synapse_http_server_response_time_seconds_bucket",
        "synapse_email_gate_surge_on",
        "synapse_email_gate_surge_switches_total",
    ):
        assert needed in used, needed

    served, _ = exposed(synapse)
    missing = sorted(name for name in used if name not in served)
    assert missing == [], f"the dashboard uses metrics Synapse does not serve: {missing}"


def test_the_label_values_the_dashboard_selects_exist(synapse: SynapseServer) -> None:
    """A fixed label value in a selector (the module's servlet name, an outcome) matches
    real series once the thing happened."""
    assert ask(synapse, "grafana-label", "grafana-label@example.org").status == 202
    assert ask(synapse, "grafana-label", "not-an-address").status == 400
    exprs, _ = dashboard_queries()
    _, samples = exposed(synapse)
    for expr in exprs:
        for selector in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^{}]*)\}", expr):
            name, matchers = selector.group(1), dict(_MATCHER.findall(selector.group(2)))
            if not matchers:
                continue
            assert any(
                s.name == name and all(s.labels.get(k) == v for k, v in matchers.items())
                for s in samples
            ), (name, matchers)
