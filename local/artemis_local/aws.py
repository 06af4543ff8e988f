"""The AWS side of the local runtime: a moto server (a process of its own) unless
AWS_ENDPOINT_URL is set, and the resources Artemis expects, named and configured as template.yaml
declares them for the
local stack name `artemis-local` (artemis_local.template):

* the bucket (BUCKET_NAME; the template's bucket name is a deploy parameter);
* `<stack>-site-events.fifo` and its FIFO DLQ `<stack>-site-events-dlq.fifo`, with the
  template's SiteEventsQueue / SiteEventsDeadLetterQueue properties (FIFO, content-based
  deduplication off, retention, visibility timeout, the redrive policy's maxReceiveCount);
* in EventBridge mode only (see `schedule_mode`), one EventBridge rule per SAM `Schedule`
  event of the template (same rule name and expression), each with one target: the standard
  queue `<stack>-schedule-ticks`, which artemis_local.workers polls to call the handlers.

Schedule modes (`ARTEMIS_LOCAL_SCHEDULES`, default `auto`):
* `eventbridge`: create the rules and the ticks queue; EventBridge fires them. LocalStack fires
  `rate(...)` rules (about every 60 s); it cannot run Lambda, so the local runtime delivers.
* `clock`: create no rules; artemis_local.workers.Scheduler fires the nightly crons by the wall
  clock (moto never fires a schedule).
* `auto`: `eventbridge` when AWS_ENDPOINT_URL is a LocalStack whose `/_localstack/health`
  lists the `events` service as available or running, else `clock` (the in-process moto
  server, or any other endpoint).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import boto3

from artemis.deadlines import Deadline
from artemis_local.template import (
    LOCAL_STACK_NAME,
    Schedule,
    load_template,
    resources_of,
    stack_names,
    substitute_stack_name,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

REGION = "us-east-1"
TICKS_QUEUE_SUFFIX = "-schedule-ticks"
TICKS_TARGET_ID = "local-schedule-ticks"
# A tick nobody received within two minutes is stale (the runtime was down): drop it rather
# than replay a backlog of relay ticks at the next start. 60 s is SQS's minimum.
TICKS_RETENTION_SECONDS = 120
SCHEDULES_ENV = "ARTEMIS_LOCAL_SCHEDULES"
ScheduleMode = Literal["eventbridge", "clock"]
HEALTH_TIMEOUT_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """moto's server in a process of its own on 127.0.0.1 (a free port).

    Its own process, not a thread: S3 and SQS are other machines in production, and a server
    sharing the API's interpreter would share its GIL, so every request the API makes to the
    bucket would queue behind the API's own work (and the reverse). The child dies with this
    process (PR_SET_PDEATHSIG on Linux) and is stopped by its pid.

    With `journal`, the bucket outlives the process: every S3 write is appended to that file
    and replayed at the next start (artemis_local.moto_journal)."""

    START_TIMEOUT_SECONDS = 30.0
    REPLAY_TIMEOUT_SECONDS = 300.0  # a long journal takes a while to replay

    def __init__(self, journal: Path | None = None) -> None:
        self.port = free_port()
        self.journal = journal
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        timeout = self.START_TIMEOUT_SECONDS
        if self.journal is not None:
            command = [sys.executable, "-m", "artemis_local.moto_journal", "--port",
                       str(self.port), "--journal", str(self.journal)]  # fmt: skip
            timeout += self.REPLAY_TIMEOUT_SECONDS
        self._proc = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            command,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_death_signal(),
        )  # fmt: skip
        deadline = Deadline.after(timeout)
        while not _answers(self.port):
            if self._proc.poll() is not None or deadline.expired():
                self.stop()
                raise RuntimeError(f"moto server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _death_signal() -> Callable[[], None] | None:
    """A pre-exec hook making the child receive SIGTERM when this process dies (Linux
    PR_SET_PDEATHSIG), resolved here so the forked child only makes the call."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, signal.SIGTERM)

    return hook


# --- the site-events queues, as the template declares them -------------------------------


@dataclass(frozen=True)
class QueueSpec:
    """SiteEventsQueue and its DLQ for one stack name: names and SQS attributes."""

    name: str
    dlq_name: str
    attributes: dict[str, str]  # without RedrivePolicy (it needs the DLQ's ARN)
    dlq_attributes: dict[str, str]
    max_receive_count: int


# CloudFormation property → SQS attribute, for the properties that mean something locally.
# (SqsManagedSseEnabled is left out: encryption at rest does not apply to an emulator.)
_QUEUE_PROPERTIES = {
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "VisibilityTimeout": "VisibilityTimeout",
}


def _attributes(props: dict[str, Any]) -> dict[str, str]:
    out = {}
    for prop, attribute in _QUEUE_PROPERTIES.items():
        if prop in props:
            value = props[prop]
            out[attribute] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def queue_pair(queue_id: str, dlq_id: str, stack_name: str = LOCAL_STACK_NAME) -> QueueSpec:
    """A FIFO queue of the template and its DLQ (logical ids), named for `stack_name`."""
    queues = resources_of(load_template(), "AWS::SQS::Queue")
    props = queues[queue_id]["Properties"]
    dlq_props = queues[dlq_id]["Properties"]
    redrive = props["RedrivePolicy"]
    if redrive.get("deadLetterTargetArn") != {"Fn::GetAtt": [dlq_id, "Arn"]}:
        raise ValueError(f"{queue_id}'s redrive must target {dlq_id}")
    return QueueSpec(
        name=substitute_stack_name(props["QueueName"], stack_name),
        dlq_name=substitute_stack_name(dlq_props["QueueName"], stack_name),
        attributes=_attributes(props),
        dlq_attributes=_attributes(dlq_props),
        max_receive_count=int(redrive["maxReceiveCount"]),
    )


def site_events_queues(stack_name: str = LOCAL_STACK_NAME) -> QueueSpec:
    return queue_pair("SiteEventsQueue", "SiteEventsDeadLetterQueue", stack_name)


def notifications_queues(stack_name: str = LOCAL_STACK_NAME) -> QueueSpec:
    return queue_pair("NotificationsQueue", "NotificationsDeadLetterQueue", stack_name)


@dataclass(frozen=True)
class Resources:
    bucket: str
    queue_url: str
    dlq_url: str
    notifications_url: str = ""
    notifications_dlq_url: str = ""


def _clients_kwargs(endpoint_url: str | None, env: dict[str, str]) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint_url,
        "region_name": env.get("AWS_REGION", REGION),
        "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
    }


def _queue(sqs: SQSClient, name: str, attributes: dict[str, str]) -> str:
    """Create the queue, or bring an existing one's mutable attributes in line (idempotent)."""
    attrs: dict[QueueAttributeNameType, str] = attributes  # type: ignore[assignment]
    try:
        return sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:  # same name, other attributes (an older runtime)
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        mutable = {k: v for k, v in attrs.items() if k not in ("FifoQueue",)}
        sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
        return url


def _arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def ensure_resources(
    endpoint_url: str | None,
    bucket: str,
    env: dict[str, str],
    stack_name: str = LOCAL_STACK_NAME,
) -> Resources:
    """Create the bucket, the site-events queues and the notifications queues if absent
    (idempotent), with the credentials in `env`."""
    kwargs = _clients_kwargs(endpoint_url, env)
    s3 = boto3.client("s3", **kwargs)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    sqs = boto3.client("sqs", **kwargs)
    queue_url, dlq_url = _queues(sqs, site_events_queues(stack_name))
    notifications_url, notifications_dlq_url = _queues(sqs, notifications_queues(stack_name))
    return Resources(bucket=bucket, queue_url=queue_url, dlq_url=dlq_url,
                     notifications_url=notifications_url,
                     notifications_dlq_url=notifications_dlq_url)  # fmt: skip


def _queues(sqs: SQSClient, spec: QueueSpec) -> tuple[str, str]:
    """The queue and its DLQ, created or brought in line: (queue URL, DLQ URL)."""
    dlq_url = _queue(sqs, spec.dlq_name, spec.dlq_attributes)
    redrive = {"deadLetterTargetArn": _arn(sqs, dlq_url), "maxReceiveCount": spec.max_receive_count}
    queue_url = _queue(sqs, spec.name, {**spec.attributes, "RedrivePolicy": json.dumps(redrive)})
    return queue_url, dlq_url


# --- schedules ----------------------------------------------------------------------------


def localstack_events_available(endpoint_url: str) -> bool:
    """Is `endpoint_url` a LocalStack serving EventBridge? (`GET /_localstack/health`)"""
    if not endpoint_url.startswith(("http://", "https://")):
        return False
    url = endpoint_url.rstrip("/") + "/_localstack/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as resp:  # noqa: S310 - http(s) checked above
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    services = body.get("services") if isinstance(body, dict) else None
    return isinstance(services, dict) and services.get("events") in ("available", "running")


def schedule_mode(env: dict[str, str]) -> ScheduleMode:
    """The mode from `ARTEMIS_LOCAL_SCHEDULES` (auto, eventbridge, clock); see the docstring."""
    wanted = (env.get(SCHEDULES_ENV) or "auto").strip().lower()
    if wanted in ("eventbridge", "clock"):
        return "eventbridge" if wanted == "eventbridge" else "clock"
    if wanted != "auto":
        raise ValueError(f"{SCHEDULES_ENV}: must be auto, eventbridge or clock, got {wanted!r}")
    endpoint = env.get("AWS_ENDPOINT_URL")
    return "eventbridge" if endpoint and localstack_events_available(endpoint) else "clock"


@dataclass(frozen=True)
class ScheduledRule:
    schedule: Schedule  # the template's SAM Schedule event
    arn: str  # the rule's ARN, as EventBridge puts it in an event's `resources`


@dataclass(frozen=True)
class ScheduleResources:
    """The EventBridge side: every template schedule as a rule targeting the ticks queue."""

    ticks_queue_url: str
    ticks_queue_arn: str
    rules: tuple[ScheduledRule, ...]

    def rule_for(self, resources: list[str]) -> ScheduledRule | None:
        """The rule an event came from, by its `resources` ARNs (the rule name as fallback:
        the account id in an emulator's ARN is not always the one put_rule returned)."""
        for arn in resources:
            for rule in self.rules:
                if arn == rule.arn:
                    return rule
        names = {arn.rsplit("/", 1)[-1] for arn in resources if ":rule/" in arn}
        return next((r for r in self.rules if r.schedule.rule_name in names), None)


def _existing_rule(events: Any, schedule: Schedule, ticks_arn: str) -> str | None:
    """The ARN of a rule already set up exactly so (expression, enabled, the one ticks
    target), else None. Skipping the puts matters on LocalStack: every PutTargets on a
    schedule rule adds one more timer job, so each restart would add a tick per minute."""
    try:
        rule = events.describe_rule(Name=schedule.rule_name)
    except events.exceptions.ResourceNotFoundException:
        return None
    if rule.get("ScheduleExpression") != schedule.expression or rule.get("State") != "ENABLED":
        return None
    targets = events.list_targets_by_rule(Rule=schedule.rule_name)["Targets"]
    if [(t["Id"], t["Arn"]) for t in targets] != [(TICKS_TARGET_ID, ticks_arn)]:
        return None
    arn: str = rule["Arn"]
    return arn


def ensure_schedules(
    endpoint_url: str | None, env: dict[str, str], stack_name: str = LOCAL_STACK_NAME
) -> ScheduleResources:
    """Create the ticks queue and one rule per template schedule, each targeting it
    (idempotent: a rule already set up so is left alone, any other is overwritten)."""
    kwargs = _clients_kwargs(endpoint_url, env)
    sqs = boto3.client("sqs", **kwargs)
    events = boto3.client("events", **kwargs)
    ticks_url = _queue(
        sqs, stack_name + TICKS_QUEUE_SUFFIX,
        {"MessageRetentionPeriod": str(TICKS_RETENTION_SECONDS)},
    )  # fmt: skip
    ticks_arn = _arn(sqs, ticks_url)
    rules = []
    for schedule in stack_names(stack_name).schedules:
        arn = _existing_rule(events, schedule, ticks_arn)
        if arn is None:
            arn = events.put_rule(
                Name=schedule.rule_name,
                ScheduleExpression=schedule.expression,
                State="ENABLED",
                Description=f"local: {schedule.function_logical_id} ({schedule.function_dir})",
            )["RuleArn"]
            events.put_targets(
                Rule=schedule.rule_name, Targets=[{"Id": TICKS_TARGET_ID, "Arn": ticks_arn}]
            )
        rules.append(ScheduledRule(schedule=schedule, arn=arn))
    # On AWS the queue policy lets EventBridge send; emulators do not check it, but keep the
    # local stack honest.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": ticks_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": [r.arn for r in rules]}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=ticks_url, Attributes={"Policy": json.dumps(policy)})
    return ScheduleResources(
        ticks_queue_url=ticks_url, ticks_queue_arn=ticks_arn, rules=tuple(rules)
    )
