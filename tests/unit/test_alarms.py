"""The alarms docs/operations.md promises exist in template.yaml, and the template has no alarm
the page does not list. Read from the files themselves: no network, no sam."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from artemis.drift_report import DANGEROUS, DriftReport
from artemis_local.template import load_template, resources_of

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def alarms() -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources_of(
            load_template(ROOT / "template.yaml"), "AWS::CloudWatch::Alarm"
        ).items()
    }


@pytest.fixture(scope="module")
def operations() -> str:
    return OPERATIONS.read_text()


def alarm_table(text: str) -> dict[str, str]:
    """The `## Alarms` section's table: alarm logical id → metric name."""
    section = text.split("\n## Alarms\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([\w.]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


def paging_drift_metrics(text: str) -> set[str]:
    """Every `drift.<name>` the page says pages on its own (`… pages`)."""
    return set(re.findall(r"`(drift\.[a-z_]+)` pages\b", text))


def notifies_the_alarm_topic(props: dict[str, Any]) -> bool:
    actions = props.get("AlarmActions")
    return actions == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                  {"Ref": "AWS::NoValue"}]}  # fmt: skip


def test_every_alarm_operations_md_promises_is_in_the_template(
    alarms: dict[str, dict[str, Any]], operations: str
) -> None:
    table = alarm_table(operations)
    assert table, "docs/operations.md has no alarm table"
    for name, metric in table.items():
        assert name in alarms, f"docs/operations.md promises {name}; template.yaml lacks it"
        assert alarms[name]["MetricName"] == metric, name
        assert notifies_the_alarm_topic(alarms[name]), name
    assert set(alarms) == set(table), "template alarms missing from docs/operations.md"


def test_every_drift_class_the_page_says_pages_has_an_alarm_on_its_metric(
    alarms: dict[str, dict[str, Any]], operations: str
) -> None:
    promised = paging_drift_metrics(operations)
    assert "drift.aliased_missing" in promised
    for metric in promised:
        watching = [
            props
            for props in alarms.values()
            if props.get("Namespace") == "Artemis" and props.get("MetricName") == metric
        ]
        assert watching, f"docs/operations.md says {metric} pages; no alarm watches it"
        for props in watching:
            assert props["ComparisonOperator"] == "GreaterThanThreshold"
            assert props["Threshold"] == 0
            assert props["Dimensions"] == [{"Name": "service", "Value": "artemis"}]
            assert notifies_the_alarm_topic(props)


def test_every_dangerous_drift_class_pages_and_is_emitted() -> None:
    text = OPERATIONS.read_text()
    assert paging_drift_metrics(text) == {f"drift.{name}" for name in DANGEROUS}
    report = DriftReport(1, None, complete=True, verdict="clean",
                         totals={name: 1 for name in DANGEROUS})  # fmt: skip
    emitted = report.metrics()
    for name in DANGEROUS:
        assert emitted[f"drift.{name}"] == 1  # the metric the alarm watches
