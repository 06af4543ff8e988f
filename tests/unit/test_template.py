"""Static checks of template.yaml (and the files it points at): fast, no network, no sam.

The template is read with a loader that turns CloudFormation short-form tags (!Ref, !Sub,
!GetAtt, !If, ...) into their long form, so the checks below see plain dicts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from artemis.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"

ALLOWED_RUNTIMES = frozenset({"python3.11", "python3.12", "python3.13"})
LAYER_ID = "CommonLayer"
LAYER_CONTENT_URI = "layers/common/"
LAYER_BUILD_METHOD = "makefile"
# The Makefile's wheel platform for each Lambda architecture (manylinux2014 = glibc 2.17).
WHEEL_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}

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


# --- loading ----------------------------------------------------------------------------


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
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnLoader)
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


# --- helpers ----------------------------------------------------------------------------


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: res for name, res in template.get("Resources", {}).items() if res.get("Type") == kind
    }


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


# --- runtime and code -------------------------------------------------------------------


def test_every_function_runtime_is_an_allowed_python(template: dict[str, Any]) -> None:
    default = function_globals(template).get("Runtime")
    for name, props in functions(template).items():
        runtime = props.get("Runtime", default)
        assert runtime in ALLOWED_RUNTIMES, (
            f"{name}: runtime {runtime!r} not in {sorted(ALLOWED_RUNTIMES)}"
        )


def test_every_function_code_defines_its_handler(template: dict[str, Any]) -> None:
    default = function_globals(template).get("Handler")
    for name, props in functions(template).items():
        code_uri = props.get("CodeUri")
        handler = props.get("Handler", default)
        assert isinstance(code_uri, str), f"{name}: CodeUri must be a local directory"
        assert handler == "app.handler", f"{name}: handler is {handler!r}, expected app.handler"
        source = ROOT / code_uri / "app.py"
        assert source.is_file(), f"{name}: {source.relative_to(ROOT)} does not exist"
        assert re.search(r"^def handler\(", source.read_text(encoding="utf-8"), re.M), (
            f"{name}: {source.relative_to(ROOT)} does not define handler()"
        )


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


def test_layer_matches_function_runtime_and_architecture(template: dict[str, Any]) -> None:
    props = template["Resources"][LAYER_ID]["Properties"]
    glob = function_globals(template)
    archs = glob.get("Architectures", ["x86_64"])
    assert glob.get("Runtime") in props["CompatibleRuntimes"]
    assert props.get("CompatibleArchitectures", ["x86_64"]) == archs
    assert glob.get("Layers") == [{"Ref": LAYER_ID}]
    for name, fn in functions(template).items():
        assert fn.get("Architectures", archs) == archs, (
            f"{name}: architecture differs from the layer"
        )
    makefile = (ROOT / LAYER_CONTENT_URI / "Makefile").read_text(encoding="utf-8")
    platform = re.search(r"^PLATFORM \?= (\S+)$", makefile, re.M)
    assert platform, "Makefile sets no PLATFORM"
    assert platform.group(1) == WHEEL_PLATFORM[archs[0]], (
        "Makefile wheels are for another architecture"
    )
    python_version = re.search(r"--python-version (\S+)", makefile)
    assert python_version and f"python{python_version.group(1)}" == glob.get("Runtime")


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
    for name, props in functions(template).items():
        variables = {**glob_vars, **props.get("Environment", {}).get("Variables", {})}
        ssm_resources = [
            statement.get("Resource")
            for policy in props.get("Policies", [])
            if isinstance(policy, dict)
            for statement in policy.get("Statement", [])
            if "ssm:GetParameter" in statement.get("Action", [])
        ]
        readable = refs_in(ssm_resources)
        for var, value in variables.items():
            if var.endswith("_PARAM"):
                param = env_parameter(template, value)
                assert param in readable, f"{name}: no ssm:GetParameter on {var} ({param})"


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
