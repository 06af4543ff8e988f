"""Read `template.yaml` as data: the template checks (tests/unit/test_template.py) and the
local runtime (which creates the same queues and schedules the template declares) share this.

The loader turns CloudFormation short-form tags (!Ref, !Sub, !GetAtt, !If, ...) into their
long form, so callers see plain dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from artemis_local.functions import REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
LOCAL_STACK_NAME = "artemis-local"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form intrinsic functions."""


def _intrinsic(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnLoader)  # noqa: S506 - a SafeLoader
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a mapping")
    return data


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: res for name, res in template.get("Resources", {}).items() if res.get("Type") == kind
    }


def substitute_stack_name(value: Any, stack_name: str) -> str:
    """A name written as a plain string or `!Sub` of `${AWS::StackName}` only."""
    text = value.get("Fn::Sub") if isinstance(value, dict) else value
    if not isinstance(text, str) or re.search(r"\$\{(?!AWS::StackName\})", text):
        raise ValueError(f"not a stack-name-only name: {value!r}")
    return text.replace("${AWS::StackName}", stack_name)


@dataclass(frozen=True)
class Schedule:
    """One SAM `Schedule` event: the EventBridge rule and the function it invokes."""

    rule_name: str
    expression: str
    function_logical_id: str
    function_dir: str  # functions/<dir>/app.py


@dataclass(frozen=True)
class StackNames:
    """The physical names the template gives the pipeline, for one stack name."""

    queue: str
    dead_letter_queue: str
    schedules: tuple[Schedule, ...]


def stack_names(stack_name: str = LOCAL_STACK_NAME, path: Path = TEMPLATE) -> StackNames:
    template = load_template(path)
    queues = resources_of(template, "AWS::SQS::Queue")
    schedules = []
    for logical_id, fn in resources_of(template, "AWS::Serverless::Function").items():
        props = fn.get("Properties", {})
        for event in props.get("Events", {}).values():
            if event.get("Type") != "Schedule":
                continue
            ev = event["Properties"]
            schedules.append(
                Schedule(
                    rule_name=substitute_stack_name(ev["Name"], stack_name),
                    expression=ev["Schedule"],
                    function_logical_id=logical_id,
                    function_dir=Path(props["CodeUri"]).name,
                )
            )
    return StackNames(
        queue=substitute_stack_name(
            queues["SiteEventsQueue"]["Properties"]["QueueName"], stack_name
        ),
        dead_letter_queue=substitute_stack_name(
            queues["SiteEventsDeadLetterQueue"]["Properties"]["QueueName"], stack_name
        ),
        schedules=tuple(sorted(schedules, key=lambda s: s.rule_name)),
    )


def function_timeout_ms(function_dir: str, path: Path = TEMPLATE) -> int:
    """The Lambda timeout the template gives `functions/<function_dir>/` (its own `Timeout`,
    else the `Globals` one), in milliseconds: local contexts report the time AWS would give."""
    template = load_template(path)
    default = template.get("Globals", {}).get("Function", {}).get("Timeout", 3)
    for fn in resources_of(template, "AWS::Serverless::Function").values():
        props = fn.get("Properties", {})
        if Path(str(props.get("CodeUri", ""))).name == function_dir:
            return int(props.get("Timeout", default)) * 1000
    raise LookupError(f"template.yaml has no function with CodeUri functions/{function_dir}/")
