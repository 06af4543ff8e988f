"""Static checks of template.yaml (and the files it points at): fast, no network, no sam.

The template is read with a loader that turns CloudFormation short-form tags (!Ref, !Sub,
!GetAtt, !If, ...) into their long form, so the checks below see plain dicts.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from artemis import config
from artemis.config import (
    DatabaseSettings,
    Settings,
    SiteWorkerSettings,
    load_settings,
    secret_variables,
)
from artemis_local.template import load_template, resources_of

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

# The layer's native wheels and bytecode are built for one interpreter: every function runs it.
ALLOWED_RUNTIMES = frozenset({"python3.13"})
LAYER_ID = "CommonLayer"
LAYER_CONTENT_URI = "layers/common/"
LAYER_BUILD_METHOD = "makefile"
# The layer built for each value of the Architecture parameter, and its wheels' CPU name.
LAYER_FOR_ARCH = {"x86_64": ("CommonLayer", "x86_64"), "arm64": ("CommonLayerArm64", "aarch64")}

# Environment variables Lambda reserves (a deploy that sets one fails).
LAMBDA_RESERVED = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)

# The secrets that load_settings() needs; used to validate one variable at a time.
REQUIRED_SECRETS = {
    "JWT_SIGNING_KEY": "k" * 32,
    "DATABASE_URL": "postgresql://127.0.0.1/unused",
}
# What a secret parameter resolves to in the checks, by the parameter's last path segment.
REQUIRED_SECRETS_BY_PARAM = {"JwtSigningKeyParam": "k" * 32,
                             "DatabaseUrlParam": "postgresql://127.0.0.1/unused"}  # fmt: skip


# --- loading ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --- helpers ----------------------------------------------------------------------------


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {
        name: res.get("Properties", {})
        for name, res in resources_of(template, "AWS::Serverless::Function").items()
    }
    assert found, "template defines no AWS::Serverless::Function"
    return found


def function_globals(template: dict[str, Any]) -> dict[str, Any]:
    glob: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    return glob


def env_blocks(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where environment variables are set: Globals and every function."""
    blocks = {"Globals": function_globals(template).get("Environment", {}).get("Variables", {})}
    for name, props in functions(template).items():
        blocks[name] = props.get("Environment", {}).get("Variables", {})
    return blocks


def refs_in(node: Any) -> set[str]:
    """Names used by Ref, GetAtt and ${...} in Fn::Sub anywhere under `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".", 1)[0]
                found.add(target)
            elif key == "Fn::Sub":
                text, local = (value[0], value[1]) if isinstance(value, list) else (value, {})
                names = {m.split(".", 1)[0] for m in re.findall(r"\$\{(?!!)([^}]+)\}", text)}
                found |= names - set(local)
                found |= refs_in(local)
            else:
                found |= refs_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= refs_in(item)
    return found


def snake_upper(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", camel).upper()


def settings_aliases() -> dict[str, str]:
    """Env var name -> Settings field name."""
    return {field.alias: name for name, field in Settings.model_fields.items() if field.alias}


def secret_param_names() -> set[str]:
    return {
        f"{field.alias}_PARAM"
        for field in Settings.model_fields.values()
        if field.alias
        and isinstance(field.json_schema_extra, dict)
        and field.json_schema_extra.get("secret")
    }


def powertools_env_names() -> set[str]:
    """Every POWERTOOLS_* variable Powertools declares in its constants module."""
    from aws_lambda_powertools.shared import constants

    return {
        value
        for value in vars(constants).values()
        if isinstance(value, str) and value.startswith("POWERTOOLS_")
    }


def env_parameter(template: dict[str, Any], value: Any) -> str | None:
    """The one template Parameter an env var value refers to (through Ref/If), if any."""
    params = refs_in(value) & set(template.get("Parameters", {}))
    assert len(params) <= 1, f"value {value!r} mixes parameters {sorted(params)}"
    return next(iter(params), None)


# --- the rules the linters miss (each has a negative case on a mutated copy below) ----------
#
# Each check returns its problems (empty = the rule holds), so a test can show both that the
# real template passes and that a template breaking the rule is caught.

PSEUDO_PARAMETERS = frozenset(
    {"AWS::AccountId", "AWS::NoValue", "AWS::Partition", "AWS::Region", "AWS::StackName",
     "AWS::URLSuffix"}
)  # fmt: skip
# Actions AWS only grants on "*" (Lambda's VPC network interfaces).
STAR_ONLY_ACTIONS = frozenset(
    {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
     "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
)  # fmt: skip
SCHEDULE_EXPRESSION = re.compile(
    r"rate\(1 (minute|hour|day)\)|rate\([1-9][0-9]* (minutes|hours|days)\)"
    r"|cron\(\S+ \S+ \S+ \S+ \S+ \S+\)"
)
# What each function reads beyond the settings every function needs (JWT key, database URL):
# the queue URLs of artemis.config that a code path dereferences (relay: publisher_for;
# site_worker: DLQ sends and visibility; api: GET /metrics depths).
FUNCTION_READS = {
    "relay": {"SITE_EVENTS_QUEUE_URL"},
    "site_worker": {"SITE_EVENTS_QUEUE_URL", "SITE_EVENTS_DLQ_URL"},
    "api": {"SITE_EVENTS_QUEUE_URL", "SITE_EVENTS_DLQ_URL"},
}


def function_setting(template: dict[str, Any], props: dict[str, Any], key: str) -> Any:
    return props.get(key, function_globals(template).get(key))


def check_runtimes(template: dict[str, Any]) -> list[str]:
    return [
        f"{name}: runtime {runtime!r} is not one of {sorted(ALLOWED_RUNTIMES)}"
        for name, props in functions(template).items()
        if (runtime := function_setting(template, props, "Runtime")) not in ALLOWED_RUNTIMES
    ]


def check_handlers_import(template: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Every function's handler module exists and, imported as Lambda would (in a fresh
    interpreter, with the template's environment), defines the handler callable."""
    problems: list[str] = []
    targets: dict[str, tuple[str, str]] = {}
    for name, props in functions(template).items():
        code_uri, handler = props.get("CodeUri"), function_setting(template, props, "Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            problems.append(f"{name}: CodeUri {code_uri!r} / Handler {handler!r} unusable")
            continue
        module, attr = handler.rsplit(".", 1)
        source = root / code_uri / (module.replace(".", "/") + ".py")
        if not source.is_file():
            problems.append(f"{name}: {source} does not exist")
            continue
        targets[name] = (str(source), attr)
    if not targets:
        return problems
    script = (
        "import importlib.util, json, sys\n"
        "bad = {}\n"
        "for name, (path, attr) in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        spec = importlib.util.spec_from_file_location('fn_' + name, path)\n"
        "        mod = importlib.util.module_from_spec(spec)\n"
        "        spec.loader.exec_module(mod)\n"
        "        if not callable(getattr(mod, attr, None)):\n"
        "            bad[name] = f'{attr} is not defined'\n"
        "    except Exception as err:\n"
        "        bad[name] = f'{type(err).__name__}: {err}'\n"
        "print(json.dumps(bad))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        **{k: v for k, v in os.environ.items() if k.startswith("PYTHON")},
        **REQUIRED_SECRETS,
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Artemis",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(targets)],
        env=env, capture_output=True, text=True, timeout=120, cwd=root,
    )  # fmt: skip
    if done.returncode != 0:
        return [*problems, f"import check crashed: {done.stderr[-500:]}"]
    bad = json.loads(done.stdout.strip().splitlines()[-1])
    return [*problems, *(f"{name}: handler does not import: {why}" for name, why in bad.items())]


def sqs_sources(template: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(function, its SQS event properties, the queue resource's properties) for every SQS
    event source whose queue the template defines."""
    found = []
    resources = template.get("Resources", {})
    for name, props in functions(template).items():
        for event in props.get("Events", {}).values():
            if event.get("Type") != "SQS":
                continue
            queue = next(iter(refs_in(event["Properties"].get("Queue"))), None)
            if queue in resources:
                found.append((name, event["Properties"], resources[queue].get("Properties", {})))
    return found


def check_fifo_sources(template: dict[str, Any]) -> list[str]:
    """A FIFO event source: no batching window (SQS rejects or Lambda ignores it, and a FIFO
    group must not wait), and partial-batch responses so one failed group does not fail all."""
    problems = []
    for name, event, queue in sqs_sources(template):
        if not queue.get("FifoQueue"):
            continue
        if event.get("MaximumBatchingWindowInSeconds", 0) != 0:
            problems.append(f"{name}: FIFO event source has a batching window")
        if "ReportBatchItemFailures" not in event.get("FunctionResponseTypes", []):
            problems.append(f"{name}: FIFO event source lacks ReportBatchItemFailures")
    return problems


def check_queue_visibility(template: dict[str, Any]) -> list[str]:
    problems = []
    for name, _, queue in sqs_sources(template):
        timeout = int(function_setting(template, functions(template)[name], "Timeout") or 3)
        visibility = int(queue.get("VisibilityTimeout", 30))
        if visibility < 6 * timeout:
            problems.append(f"{name}: queue visibility {visibility}s < 6 x timeout {timeout}s")
    return problems


def effective_env(template: dict[str, Any], props: dict[str, Any]) -> dict[str, str]:
    """A function's environment with every parameter at its default, secrets as placeholders."""
    parameters = template.get("Parameters", {})
    merged = {
        **env_blocks(template)["Globals"],
        **props.get("Environment", {}).get("Variables", {}),
    }
    env: dict[str, str] = {}
    for var, value in merged.items():
        if isinstance(value, str):
            env[var] = value
            continue
        param = env_parameter(template, value)
        if param is not None:
            default = parameters[param].get("Default")
            if default is not None and default != "":
                env[var] = str(default)
            elif "Default" not in parameters[param]:
                env[var] = "/required/" + param
        elif refs_in(value) & set(template.get("Resources", {})):
            # !Ref of a FIFO queue is its URL
            env[var] = f"https://sqs.us-east-1.amazonaws.com/000000000000/{var.lower()}.fifo"
    return env


def settings_model(props: dict[str, Any], root: Path = ROOT) -> type[DatabaseSettings]:
    """The settings model a function's handler asks `runtime.current()` for (read from its
    source: the API's Settings when it names none)."""
    source = root / str(props.get("CodeUri", "")) / "app.py"
    named = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "current"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "runtime"
        ):
            arg = node.args[0] if node.args else None
            named.add(arg.id if isinstance(arg, ast.Name) else "Settings")
    assert len(named) <= 1, f"{source}: runtime.current() with several models {sorted(named)}"
    model: type[DatabaseSettings] = getattr(config, next(iter(named), "Settings"))
    return model


def ssm_readable(template: dict[str, Any], props: dict[str, Any]) -> set[str]:
    """The template parameters whose SSM parameter the function's policies let it read."""
    managed = resources_of(template, "AWS::IAM::ManagedPolicy")
    policies = list(props.get("Policies", []))
    attached = refs_in(policies) & set(managed)
    policies += [managed[m]["Properties"]["PolicyDocument"] for m in attached]
    ssm_resources = [
        statement.get("Resource")
        for statement in statements_of(policies)
        if "ssm:GetParameter" in statement.get("Action", [])
    ]
    return refs_in(ssm_resources) & set(template.get("Parameters", {}))


def check_secret_scope(template: dict[str, Any]) -> list[str]:
    """Each function's `<VAR>_PARAM` variables are exactly the secrets its settings model
    reads, and its policies read exactly the secret parameters its environment names."""
    problems = []
    glob_vars = env_blocks(template)["Globals"]
    for name, props in functions(template).items():
        model = settings_model(props)
        mine = {f"{var}_PARAM" for var in secret_variables(model)}
        variables = {**glob_vars, **props.get("Environment", {}).get("Variables", {})}
        given = {var: value for var, value in variables.items() if var.endswith("_PARAM")}
        for var in sorted(set(given) - mine):
            problems.append(f"{name}: {var} is set, but {model.__name__} never reads it")
        for var in sorted(mine - set(given)):
            problems.append(f"{name}: {model.__name__} reads a secret, but {var} is not set")
        wired = {p for value in given.values() if (p := env_parameter(template, value))}
        readable = ssm_readable(template, props)
        for param in sorted(readable - wired):
            problems.append(f"{name}: may read {param}, which its environment does not name")
        for param in sorted(wired - readable):
            problems.append(f"{name}: its environment names {param}, which no policy reads")
    return problems


# The secret parameters a stack may leave empty (their variables and policies are conditional).
OPTIONAL_SECRET_PARAMETERS = ("RedisUrlParam", "GhAppPrivateKeyParam")


def check_secret_conditions(template: dict[str, Any]) -> list[str]:
    """For every choice of the optional secret parameters (set or empty), each function's
    policies can read exactly the SSM parameters its environment names, and it attaches only
    policies the stack creates: the conditions of the variables, the attachments and the
    policies agree."""
    problems = []
    managed = resources_of(template, "AWS::IAM::ManagedPolicy")
    no_value = {"Ref": "AWS::NoValue"}
    glob_vars = env_blocks(template)["Globals"]
    for choice in itertools.product(("", "/artemis/test/secret"), repeat=2):
        params = dict(zip(OPTIONAL_SECRET_PARAMETERS, choice, strict=True))
        created = {
            policy for policy, res in managed.items()
            if "Condition" not in res or condition_holds(template, res["Condition"], params)
        }  # fmt: skip
        for name, props in functions(template).items():
            variables = {**glob_vars, **props.get("Environment", {}).get("Variables", {})}
            named = {
                str(env_parameter(template, value))
                for var, value in variables.items()
                if var.endswith("_PARAM") and resolve_ifs(template, value, params) != no_value
            }
            policies = [
                policy for policy in resolve_ifs(template, props.get("Policies", []), params)
                if policy != no_value
            ]  # fmt: skip
            attached = refs_in(policies) & set(managed)
            if attached - created:
                problems.append(f"{name}: attaches {sorted(attached - created)} with {params}")
            documents = policies + [managed[m]["Properties"]["PolicyDocument"] for m in attached]
            readable = refs_in(
                [
                    statement.get("Resource")
                    for statement in statements_of(resolve_ifs(template, documents, params))
                    if "ssm:GetParameter" in statement.get("Action", [])
                ]
            ) & set(template["Parameters"])
            if named != readable:
                problems.append(
                    f"{name}: with {params} names {sorted(named)}, may read {sorted(readable)}"
                )
    return problems


def check_env_reads(template: dict[str, Any]) -> list[str]:
    """Every variable the code reads is set for the functions that read it: each function's
    settings model loads from its environment, and the per-function reads are present."""
    problems = []
    for name, props in functions(template).items():
        env = effective_env(template, props)
        try:
            load_settings(
                env,
                lambda param: REQUIRED_SECRETS_BY_PARAM.get(param.split("/")[-1], "x" * 40),
                settings_model(props),
            )
        except Exception as err:
            problems.append(f"{name}: settings do not load from its environment: {err}")
        fn_dir = Path(str(props.get("CodeUri", ""))).name
        for var in sorted(FUNCTION_READS.get(fn_dir, set()) - set(env)):
            problems.append(f"{name}: reads {var}, which is not set")
    return problems


def check_schedules(template: dict[str, Any]) -> list[str]:
    """Every schedule has a valid expression and invokes a function the template defines; the
    scheduled functions do not retry asynchronously and have reserved concurrency."""
    problems = []
    fns = functions(template)
    for name, props in fns.items():
        for event_name, event in props.get("Events", {}).items():
            if event.get("Type") != "Schedule":
                continue
            expression = event["Properties"].get("Schedule", "")
            if not SCHEDULE_EXPRESSION.fullmatch(str(expression)):
                problems.append(f"{name}.{event_name}: bad schedule {expression!r}")
            if props.get("EventInvokeConfig", {}).get("MaximumRetryAttempts") != 0:
                problems.append(f"{name}: scheduled, but asynchronous retries are not 0")
            if "ReservedConcurrentExecutions" not in props:
                problems.append(f"{name}: scheduled, but has no reserved concurrency")
    for rule_name, rule in resources_of(template, "AWS::Events::Rule").items():
        for target in rule.get("Properties", {}).get("Targets", []):
            named = refs_in(target.get("Arn"))
            if not named or not named <= set(fns):
                problems.append(f"{rule_name}: target {target.get('Arn')!r} is not a function")
    return problems


def policy_documents(template: dict[str, Any]) -> list[tuple[str, Any]]:
    """(owner, policy) for every function policy entry and every managed policy resource."""
    docs: list[tuple[str, Any]] = []
    for name, props in functions(template).items():
        docs.extend((name, policy) for policy in props.get("Policies", []))
    for name, res in resources_of(template, "AWS::IAM::ManagedPolicy").items():
        docs.append((name, res["Properties"]["PolicyDocument"]))
    return docs


def statements_of(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            found.append(node)
        else:
            for value in node.values():
                found.extend(statements_of(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(statements_of(item))
    return found


def check_policies(template: dict[str, Any]) -> list[str]:
    """Policies name only what the template defines (resources, parameters, pseudo
    parameters): no literal ARN of something else, no "*" beyond the actions that need it."""
    known = set(template.get("Resources", {})) | set(template.get("Parameters", {}))
    problems = []
    for owner, policy in policy_documents(template):
        unknown = refs_in(policy) - known - PSEUDO_PARAMETERS
        if unknown:
            problems.append(f"{owner}: policy refers to undefined {sorted(unknown)}")
        if isinstance(policy, str):
            problems.append(f"{owner}: literal policy {policy!r}")
        for statement in statements_of(policy):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement.get("Resource", [])
            for resource in resources if isinstance(resources, list) else [resources]:
                if resource == "*":
                    if not set(actions) <= STAR_ONLY_ACTIONS:
                        problems.append(f"{owner}: {sorted(actions)} on *")
                elif isinstance(resource, str):
                    problems.append(f"{owner}: literal resource {resource!r}")
    return problems


RULES = {
    "runtimes": check_runtimes,
    "fifo_sources": check_fifo_sources,
    "queue_visibility": check_queue_visibility,
    "env_reads": check_env_reads,
    "schedules": check_schedules,
    "policies": check_policies,
    "secret_scope": check_secret_scope,
    "secret_conditions": check_secret_conditions,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_template_keeps_the_rule(template: dict[str, Any], rule: str) -> None:
    assert RULES[rule](template) == []


def test_every_function_handler_module_exists_and_imports(template: dict[str, Any]) -> None:
    assert check_handlers_import(template) == []
    assert {Path(p["CodeUri"]).name for p in functions(template).values()} == {
        p.parent.name for p in (ROOT / "functions").glob("*/app.py")
    }, "a function directory without a template function, or the reverse"


def mutated(template: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = deepcopy(template)
    change(copy)
    return copy


def fn_props(template: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"][name]["Properties"]
    return props


def drop_policy(template: dict[str, Any], function: str, policy: str) -> None:
    """Detach a managed policy from a function (however its attachment is conditioned)."""
    props = fn_props(template, function)
    props["Policies"] = [p for p in props["Policies"] if policy not in refs_in(p)]


def drop_secret(template: dict[str, Any], function: str, variable: str) -> None:
    """Take a secret's parameter from a function: its variable and the policies reading it."""
    param = env_parameter(
        template, fn_props(template, function)["Environment"]["Variables"].pop(variable)
    )
    managed = resources_of(template, "AWS::IAM::ManagedPolicy")
    for policy, res in managed.items():
        if param in refs_in(res["Properties"]["PolicyDocument"]):
            drop_policy(template, function, policy)


def worker_sqs_event(template: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = fn_props(template, "SiteWorkerFunction")["Events"]["SiteEvents"]
    properties: dict[str, Any] = event["Properties"]
    return properties


MUTATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "bad runtime name": (
        "runtimes",
        lambda t: fn_props(t, "RelayFunction").update(Runtime="python3.1"),
    ),
    "a runtime the layer is not built for": (
        "runtimes",
        lambda t: t["Globals"]["Function"].update(Runtime="python3.11"),
    ),
    "FIFO batching window": (
        "fifo_sources",
        lambda t: worker_sqs_event(t).update(MaximumBatchingWindowInSeconds=5),
    ),
    "no partial batch response": (
        "fifo_sources",
        lambda t: worker_sqs_event(t).pop("FunctionResponseTypes"),
    ),
    "visibility below 6 x timeout": (
        "queue_visibility",
        lambda t: t["Resources"]["SiteEventsQueue"]["Properties"].update(VisibilityTimeout=600),
    ),
    "worker timeout raised past the visibility": (
        "queue_visibility",
        lambda t: fn_props(t, "SiteWorkerFunction").update(Timeout=900),
    ),
    "relay without its queue URL": (
        "env_reads",
        lambda t: fn_props(t, "RelayFunction")["Environment"]["Variables"].pop(
            "SITE_EVENTS_QUEUE_URL"
        ),
    ),
    "a required setting removed": (
        "env_reads",
        lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("DATABASE_URL_PARAM"),
    ),
    "a bad setting value": (
        "env_reads",
        lambda t: t["Parameters"]["CleanupGrace"].update(Default="soon"),
    ),
    "bad schedule expression": (
        "schedules",
        lambda t: fn_props(t, "RelayFunction")["Events"]["Tick"]["Properties"].update(
            Schedule="every minute"
        ),
    ),
    "cron with async retries": (
        "schedules",
        lambda t: fn_props(t, "TombstonePurgeFunction")["EventInvokeConfig"].update(
            MaximumRetryAttempts=2
        ),
    ),
    "cron without reserved concurrency": (
        "schedules",
        lambda t: fn_props(t, "DriftDetectFunction").pop("ReservedConcurrentExecutions"),
    ),
    "rule targeting a missing function": (
        "schedules",
        lambda t: t["Resources"].update(
            StrayRule={
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "ScheduleExpression": "rate(1 hour)",
                    "Targets": [{"Id": "x", "Arn": {"Fn::GetAtt": ["GoneFunction", "Arn"]}}],
                },
            }
        ),
    ),
    "policy on a bucket the template does not define": (
        "policies",
        lambda t: fn_props(t, "DriftDetectFunction")["Policies"].append(
            {"S3CrudPolicy": {"BucketName": {"Ref": "SomeoneElsesBucket"}}}
        ),
    ),
    "literal ARN in a statement": (
        "policies",
        lambda t: fn_props(t, "RelayFunction")["Policies"].append(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["sqs:SendMessage"],
                        "Resource": "arn:aws:sqs:us-east-1:123456789012:other",
                    }
                ]
            }
        ),
    ),
    "relay given the session key": (
        "secret_scope",
        lambda t: fn_props(t, "RelayFunction")["Environment"]["Variables"].update(
            JWT_SIGNING_KEY_PARAM={"Ref": "JwtSigningKeyParam"}
        ),
    ),
    "the session key back in Globals": (
        "secret_scope",
        lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(
            JWT_SIGNING_KEY_PARAM={"Ref": "JwtSigningKeyParam"}
        ),
    ),
    "migrate may read the API's secrets": (
        "secret_scope",
        lambda t: fn_props(t, "MigrateFunction")["Policies"].append(
            {"Ref": "ReadSessionKeyPolicy"}
        ),
    ),
    "site worker given the session key": (
        "secret_scope",
        lambda t: fn_props(t, "SiteWorkerFunction")["Environment"]["Variables"].update(
            JWT_SIGNING_KEY_PARAM={"Ref": "JwtSigningKeyParam"}
        ),
    ),
    "site worker may read the session key": (
        "secret_scope",
        lambda t: fn_props(t, "SiteWorkerFunction")["Policies"].append(
            {"Ref": "ReadSessionKeyPolicy"}
        ),
    ),
    "site worker without the App key it reads": (
        "secret_scope",
        lambda t: drop_secret(t, "SiteWorkerFunction", "GH_APP_PRIVATE_KEY_PARAM"),
    ),
    "api named the Redis URL but may not read it": (
        "secret_scope",
        lambda t: drop_policy(t, "ApiFunction", "ReadRedisUrlPolicy"),
    ),
    "the Redis policy attached without its condition": (
        "secret_conditions",
        lambda t: fn_props(t, "SiteWorkerFunction")["Policies"].append(
            {"Ref": "ReadRedisUrlPolicy"}
        ),
    ),
    "the App key's variable kept when its policy is not": (
        "secret_conditions",
        lambda t: fn_props(t, "ApiFunction")["Environment"]["Variables"].update(
            GH_APP_PRIVATE_KEY_PARAM={"Ref": "GhAppPrivateKeyParam"}
        ),
    ),
    "wildcard resource": (
        "policies",
        lambda t: fn_props(t, "ApiFunction")["Policies"].append(
            {"Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_a_template_breaking_the_rule_is_caught(template: dict[str, Any], case: str) -> None:
    rule, change = MUTATIONS[case]
    assert RULES[rule](mutated(template, change)), f"{rule} missed: {case}"


def test_a_handler_that_does_not_import_is_caught(template: dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "functions" / "relay"
    broken.mkdir(parents=True)
    (broken / "app.py").write_text("import artemis.no_such_module\n\ndef handler(e, c): ...\n")
    missing = mutated(template, lambda t: fn_props(t, "ApiFunction").update(Handler="app.nothere"))
    only_relay = mutated(
        template,
        lambda t: t.update(Resources={"RelayFunction": t["Resources"]["RelayFunction"]}),
    )
    assert any("RelayFunction" in p for p in check_handlers_import(only_relay, tmp_path))
    assert any("nothere" in p for p in check_handlers_import(missing))


def test_the_migrate_function_ships_the_migrations() -> None:
    """`functions/migrate/sql` is a link to `sql/`: sam build copies the files into the
    package, and the handler reads them from beside itself."""
    link = ROOT / "functions" / "migrate" / "sql"
    assert link.is_symlink() and link.resolve() == (ROOT / "sql").resolve()


# --- the shared layer -------------------------------------------------------------------


def test_layer_build_method_and_layout(template: dict[str, Any]) -> None:
    layer = template["Resources"][LAYER_ID]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == LAYER_CONTENT_URI
    assert layer.get("Metadata", {}).get("BuildMethod") == LAYER_BUILD_METHOD
    content = ROOT / LAYER_CONTENT_URI
    assert (content / "requirements.txt").is_file()
    assert (content / "python" / "artemis" / "__init__.py").is_file()
    makefile = (content / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^build-{LAYER_ID}:", makefile, re.M), f"Makefile lacks build-{LAYER_ID}"
    # The package must land at python/artemis in the artifact, not python/python/artemis.
    assert 'cp -R python/artemis "$(ARTIFACTS_DIR)/python/"' in makefile


def condition_holds(template: dict[str, Any], node: Any, params: dict[str, str]) -> bool:
    """Evaluates a condition (Equals, Not, And, Or, Condition; Ref of a parameter)."""

    def value(item: Any) -> Any:
        if isinstance(item, dict) and "Ref" in item:
            return params.get(item["Ref"], template["Parameters"][item["Ref"]].get("Default"))
        return item

    if isinstance(node, str):  # a condition's name
        return condition_holds(template, template["Conditions"][node], params)
    ((fn, args),) = node.items()
    if fn == "Fn::Equals":
        return bool(value(args[0]) == value(args[1]))
    if fn == "Fn::Not":
        return not condition_holds(template, args[0], params)
    if fn == "Fn::And":
        return all(condition_holds(template, a, params) for a in args)
    if fn == "Fn::Or":
        return any(condition_holds(template, a, params) for a in args)
    if fn == "Condition":
        return condition_holds(template, args, params)
    raise AssertionError(f"unknown condition function {fn}")


def resolve_ifs(template: dict[str, Any], node: Any, params: dict[str, str]) -> Any:
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        name, then, other = node["Fn::If"]
        chosen = then if condition_holds(template, name, params) else other
        return resolve_ifs(template, chosen, params)
    if isinstance(node, list):
        return [resolve_ifs(template, item, params) for item in node]
    if isinstance(node, dict):
        return {key: resolve_ifs(template, value, params) for key, value in node.items()}
    return node


def test_the_stack_gets_the_layer_built_for_its_runtime_and_architecture(
    template: dict[str, Any],
) -> None:
    """For each value of the Architecture parameter the functions run on it, and the one layer
    the stack creates was built (by its Makefile target) for that CPU and the runtime."""
    parameter = template["Parameters"]["Architecture"]
    assert parameter["Default"] == "x86_64"
    assert set(parameter["AllowedValues"]) == set(LAYER_FOR_ARCH)
    glob = function_globals(template)
    assert glob.get("Architectures") == [{"Ref": "Architecture"}]
    for name, fn in functions(template).items():
        assert "Architectures" not in fn and "Layers" not in fn, f"{name} overrides Globals"
    makefile = (ROOT / LAYER_CONTENT_URI / "Makefile").read_text(encoding="utf-8")
    lambda_python = re.search(r"^LAMBDA_PYTHON :?= (\S+)$", makefile, re.M)
    assert lambda_python and f"python{lambda_python.group(1)}" == glob.get("Runtime")
    layers = resources_of(template, "AWS::Serverless::LayerVersion")
    assert set(layers) == {layer_id for layer_id, _ in LAYER_FOR_ARCH.values()}
    for arch, (layer_id, cpu) in LAYER_FOR_ARCH.items():
        params = {"Architecture": arch}
        created = {
            other for other, res in layers.items()
            if condition_holds(template, res["Condition"], params)
        }  # fmt: skip
        assert created == {layer_id}, f"{arch}: the stack creates {sorted(created)}"
        assert resolve_ifs(template, glob.get("Layers"), params) == [{"Ref": layer_id}]
        layer = layers[layer_id]
        assert layer["Properties"]["ContentUri"] == LAYER_CONTENT_URI
        assert layer["Properties"]["CompatibleRuntimes"] == [glob.get("Runtime")]
        assert layer["Properties"]["CompatibleArchitectures"] == [arch]
        assert layer["Metadata"] == {"BuildMethod": LAYER_BUILD_METHOD, "BuildArchitecture": arch}
        target = re.search(rf"^build-{layer_id}:\n\t\$\(call build_layer,(\S+)\)$", makefile, re.M)
        assert target, f"Makefile lacks build-{layer_id}"
        assert target.group(1) == cpu, f"build-{layer_id} fetches {target.group(1)} wheels"


# --- environment variables --------------------------------------------------------------


def test_every_env_var_name_is_known(template: dict[str, Any]) -> None:
    # Runtime switches of our libraries, not settings of ours.
    library_switches = {"PYDANTIC_DISABLE_PLUGINS"}
    allowed = (
        set(settings_aliases()) | secret_param_names() | powertools_env_names() | library_switches
    )
    for where, variables in env_blocks(template).items():
        for var in variables:
            if var.startswith("AWS_") and var not in allowed:
                assert var not in LAMBDA_RESERVED, f"{where}: {var} is reserved by Lambda"
                continue
            assert var in allowed, (
                f"{where}: {var} is not a Settings variable, secret _PARAM or Powertools name"
            )


def test_env_vars_are_wired_to_the_parameter_of_the_same_name(template: dict[str, Any]) -> None:
    for where, variables in env_blocks(template).items():
        for var, value in variables.items():
            param = env_parameter(template, value)
            if param is not None:
                assert snake_upper(param) == var, f"{where}: {var} takes parameter {param}"


def test_parameter_defaults_equal_settings_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    aliases = settings_aliases()
    checked = 0
    for variables in env_blocks(template).values():
        for var, value in variables.items():
            param = env_parameter(template, value)
            if param is None or var not in aliases or "Default" not in parameters[param]:
                continue
            field = aliases[var]
            loaded = load_settings({**REQUIRED_SECRETS, var: str(parameters[param]["Default"])})
            expected = Settings.model_fields[field].default
            assert getattr(loaded, field) == expected, (
                f"{param} default differs from Settings.{field}"
            )
            checked += 1
    assert checked, "no parameter default was compared"


def test_secret_params_are_readable_by_every_function(template: dict[str, Any]) -> None:
    glob_vars = env_blocks(template)["Globals"]
    managed = resources_of(template, "AWS::IAM::ManagedPolicy")
    for name, props in functions(template).items():
        variables = {**glob_vars, **props.get("Environment", {}).get("Variables", {})}
        policies = list(props.get("Policies", []))
        attached = refs_in(policies) & set(managed)
        policies += [managed[m]["Properties"]["PolicyDocument"] for m in attached]
        ssm_resources = [
            statement.get("Resource")
            for statement in statements_of(policies)
            if "ssm:GetParameter" in statement.get("Action", [])
        ]
        readable = refs_in(ssm_resources)
        for var, value in variables.items():
            if var.endswith("_PARAM"):
                param = env_parameter(template, value)
                assert param in readable, f"{name}: no ssm:GetParameter on {var} ({param})"


def test_functions_that_never_read_the_session_key_get_neither_it_nor_its_policy(
    template: dict[str, Any],
) -> None:
    """migrate and the background jobs load a settings model without JWT_SIGNING_KEY, so a cold
    start fetches only the database URL: no variable naming the key, no policy reading it."""
    glob_vars = env_blocks(template)["Globals"]
    without_key = set()
    for name, props in functions(template).items():
        model = settings_model(props)
        if "JWT_SIGNING_KEY" in secret_variables(model):
            continue
        without_key.add(Path(props["CodeUri"]).name)
        variables = {**glob_vars, **props.get("Environment", {}).get("Variables", {})}
        assert "JWT_SIGNING_KEY_PARAM" not in variables, f"{name} is given the session key"
        assert "JwtSigningKeyParam" not in ssm_readable(template, props), (
            f"{name} may read the session key"
        )
    expected = {"migrate", "relay", "drift_detect", "tombstone_purge", "reconcile", "backfill"}
    assert expected <= without_key


def test_the_site_worker_gets_the_app_key_and_not_the_session_key(
    template: dict[str, Any],
) -> None:
    """The site worker finishes repo approvals through the App but never signs or verifies a
    deploy session: its model reads the App's key and not the session key, and so do its
    environment and its policies."""
    props = fn_props(template, "SiteWorkerFunction")
    assert settings_model(props) is SiteWorkerSettings
    assert "JWT_SIGNING_KEY" not in secret_variables(SiteWorkerSettings)
    assert {"DATABASE_URL", "GH_APP_PRIVATE_KEY", "REDIS_URL"} == secret_variables(
        SiteWorkerSettings
    )
    variables = {**env_blocks(template)["Globals"], **props["Environment"]["Variables"]}
    assert "JWT_SIGNING_KEY_PARAM" not in variables
    assert {"DATABASE_URL_PARAM", "GH_APP_PRIVATE_KEY_PARAM", "REDIS_URL_PARAM"} <= set(variables)
    readable = ssm_readable(template, props)
    assert "JwtSigningKeyParam" not in readable
    assert {"DatabaseUrlParam", "GhAppPrivateKeyParam", "RedisUrlParam"} <= readable


def test_ssm_parameter_names_must_start_with_a_slash(template: dict[str, Any]) -> None:
    # The policy builds ...:parameter${Name}; that is only the right ARN for names like /a/b.
    for name, spec in template["Parameters"].items():
        if name.endswith("Param"):
            pattern = spec.get("AllowedPattern")
            assert pattern, f"{name} has no AllowedPattern"
            assert re.fullmatch(pattern, "/artemis/dev/x"), f"{name} rejects /artemis/dev/x"
            assert not re.fullmatch(pattern, "artemis/dev/x"), f"{name} accepts a name without /"


# --- parameters -------------------------------------------------------------------------


def test_every_parameter_is_referenced(template: dict[str, Any]) -> None:
    body = {key: value for key, value in template.items() if key != "Parameters"}
    used = refs_in(body)
    unused = sorted(set(template.get("Parameters", {})) - used)
    assert not unused, f"parameters never referenced: {unused}"


def test_samconfig_overrides_name_real_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    envs = {"default", "dev", "staging", "prod"}
    assert envs <= set(config), f"samconfig.toml lacks {sorted(envs - set(config))}"
    for env in envs:
        overrides = config[env]["deploy"]["parameters"]["parameter_overrides"]
        keys = {item.split("=", 1)[0] for item in overrides.split()}
        assert keys <= set(parameters), (
            f"[{env}] overrides unknown {sorted(keys - set(parameters))}"
        )
        assert required <= keys, f"[{env}] does not set {sorted(required - keys)}"
