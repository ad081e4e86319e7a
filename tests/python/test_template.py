"""template.yaml, read from the template itself: least privilege, Lambda's queue rules, the
optional VPC attachment (both parameter shapes, conditions evaluated), the alarms and the
dashboard, whose widgets must name only metrics, dimensions and resources that the Rust code
(read from its source) and the template produce.
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
RUST_SOURCES = REPO / "shared" / "src"
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
VPC_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
BASIC_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
ALARM_ACTIONS = {"If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !GetAtt, !Sub, ...) as plain data."""


def _tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM policy statement anywhere in the template."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            found.append(node)
        for value in node.values():
            found.extend(statements(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(statements(value))
    return found


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def test_no_wildcard_in_any_iam_action_or_resource() -> None:
    found = statements(template()["Resources"])
    assert len(found) >= 6, "the functions' and the scheduler's statements are all found"
    for statement in found:
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            for value in strings(statement.get(key, [])):
                assert "*" not in value, f"{key} {value!r} in {statement}"
        assert statement["Effect"] == "Allow"


def test_wildcard_check_catches_a_wildcard() -> None:
    """The check above would fail on a template granting `sqs:*`."""
    bad = {"Policies": [{"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": {"Ref": "Q"}}]}]}
    values = [v for s in statements(bad) for v in strings(s["Action"])]
    assert values == ["sqs:*"]


def test_secret_access_is_limited_to_the_secret_parameter() -> None:
    for statement in statements(template()["Resources"]):
        actions = strings(statement["Action"])
        if any(a.startswith("secretsmanager:") for a in actions):
            assert actions == ["secretsmanager:GetSecretValue"]
            assert statement["Resource"] == {"Ref": "SnowflakeSecretArn"}


def test_queues_have_dead_letter_queues_and_ingest_reports_item_failures() -> None:
    resources = template()["Resources"]
    for queue, dlq in (("EventsQueue", "EventsDeadLetterQueue"), ("StagingQueue", "StagingDeadLetterQueue")):
        redrive = resources[queue]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"GetAtt": f"{dlq}.Arn"}
        assert resources[dlq]["Properties"]["MessageRetentionPeriod"] == 1209600
    events = resources["IngestFunction"]["Properties"]["Events"]["Events"]["Properties"]
    assert events["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Visibility is "<timeout>0" seconds: ten times the function timeout, above Lambda's six.
    visibility = resources["EventsQueue"]["Properties"]["VisibilityTimeout"]
    assert "${IngestTimeoutSeconds}0" in str(visibility)


def test_schedule_exists_only_in_scheduled_mode() -> None:
    resources = template()["Resources"]
    assert resources["FlushSchedule"]["Condition"] == "IsScheduled"
    assert resources["FlushSchedulerRole"]["Condition"] == "IsScheduled"
    assert template()["Conditions"]["IsScheduled"] == {"Equals": [{"Ref": "LoadMode"}, "scheduled"]}


# ------------------------------------------------------------------------------------------------
# Evaluating parameters, conditions and rules, as CloudFormation would for one set of parameters
# ------------------------------------------------------------------------------------------------

NO_VALUE = object()
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::StackName": "tracklayer-snowflake"}


def parameters(tpl: dict[str, Any], **given: Any) -> dict[str, Any]:
    """Parameter values: defaults, overridden by `given`; a CommaDelimitedList is a list (an
    empty one is [""], as CloudFormation splits the empty string)."""
    values: dict[str, Any] = {}
    for name, spec in tpl["Parameters"].items():
        value = given.get(name, spec.get("Default"))
        if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        values[name] = value
    return values


@dataclass
class Stack:
    """One parameter set of the template: evaluates intrinsics the way CloudFormation does."""

    tpl: dict[str, Any]
    params: dict[str, Any]
    cache: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name not in self.cache:
            self.cache[name] = bool(self.eval(self.tpl["Conditions"][name]))
        return self.cache[name]

    def eval(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.eval(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            intrinsic = INTRINSICS.get(key.removeprefix("Fn::"))
            if intrinsic is not None:
                return intrinsic(self, arg)
        return {k: v for k, v in ((k, self.eval(v)) for k, v in node.items()) if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        return self.params.get(name, {"Ref": name})  # a resource stays symbolic

    def if_(self, arg: list[Any]) -> Any:
        name, then, otherwise = arg
        return self.eval(then if self.condition(name) else otherwise)

    def sub_intrinsic(self, arg: Any) -> str:
        if isinstance(arg, str):
            return self.sub(arg, {})
        text, variables = arg
        return self.sub(text, {k: self.eval(v) for k, v in variables.items()})

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        """Substitutes variables, parameters and pseudo parameters; resource references stay."""

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if name in self.params and not isinstance(self.params[name], list):
                return str(self.params[name])
            if name in PSEUDO:
                return PSEUDO[name]
            return match.group(0)

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resource(self, name: str) -> dict[str, Any] | None:
        """A resource's evaluated properties, or None when its condition leaves it out."""
        resource = self.tpl["Resources"][name]
        if "Condition" in resource and not self.condition(resource["Condition"]):
            return None
        return self.eval(resource.get("Properties", {}))

    def function_properties(self, name: str) -> dict[str, Any]:
        """A SAM function's properties with the Globals merged in (the function's win)."""
        merged = dict(self.eval(self.tpl["Globals"]["Function"]))
        merged.update(self.resource(name) or {})
        return merged


def scalar_text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


INTRINSICS = {
    "Ref": Stack.ref,
    "Condition": Stack.condition,
    "If": Stack.if_,
    # CloudFormation hands every parameter to intrinsics as a string (a Number's Ref too)
    "Equals": lambda st, arg: scalar_text(st.eval(arg[0])) == scalar_text(st.eval(arg[1])),
    "Not": lambda st, arg: not st.eval(arg[0]),
    "And": lambda st, arg: all(st.eval(x) for x in arg),
    "Or": lambda st, arg: any(st.eval(x) for x in arg),
    "Join": lambda st, arg: arg[0].join(str(v) for v in st.eval(arg[1])),
    "EachMemberEquals": lambda st, arg: all(v == st.eval(arg[1]) for v in st.eval(arg[0])),
    "Sub": Stack.sub_intrinsic,
}


def functions(tpl: dict[str, Any]) -> list[str]:
    return [n for n, r in tpl["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]


def of_type(tpl: dict[str, Any], kind: str) -> list[str]:
    return [n for n, r in tpl["Resources"].items() if r["Type"] == kind]


# ------------------------------------------------------------------------------------------------
# Fixed egress: the optional VPC attachment
# ------------------------------------------------------------------------------------------------

WITH_VPC = {"SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroupIds": "sg-0123456789abcdef0"}


def test_without_vpc_parameters_nothing_attaches_and_no_eni_permissions() -> None:
    tpl = template()
    stack = Stack(tpl, parameters(tpl))
    assert stack.params["SubnetIds"] == [""] and stack.params["SecurityGroupIds"] == [""]
    assert not stack.condition("HasVpc")
    for name in functions(tpl):
        assert "VpcConfig" not in stack.function_properties(name), name
    for role in ("IngestRole", "FlushRole", "ConnectionTestRole"):
        assert stack.resource(role)["ManagedPolicyArns"] == [BASIC_POLICY], role


def test_with_vpc_parameters_every_function_attaches_with_the_managed_eni_policy() -> None:
    tpl = template()
    stack = Stack(tpl, parameters(tpl, **WITH_VPC))
    assert stack.condition("HasVpc")
    roles = set()
    for name in functions(tpl):
        properties = stack.function_properties(name)
        assert properties["VpcConfig"] == {
            "SubnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
            "SecurityGroupIds": ["sg-0123456789abcdef0"],
        }, name
        role = properties["Role"]["GetAtt"].removesuffix(".Arn")
        assert tpl["Resources"][role]["Type"] == "AWS::IAM::Role", name
        roles.add(role)
    assert roles == {"IngestRole", "FlushRole", "ConnectionTestRole"}, "one role per function"
    for role in roles:
        assert stack.resource(role)["ManagedPolicyArns"] == [BASIC_POLICY, VPC_POLICY], role


def test_functions_keep_no_sam_policies_so_sam_adds_nothing_unconditionally() -> None:
    """SAM attaches AWSLambdaVPCAccessExecutionRole to the role it generates whenever VpcConfig
    is set at all (an Fn::If included), and AWSLambdaSQSQueueExecutionRole (Resource "*") for an
    SQS event: our functions bring their own roles, so SAM generates none."""
    tpl = template()
    assert "VpcConfig" in tpl["Globals"]["Function"]
    for name in functions(tpl):
        properties = tpl["Resources"][name]["Properties"]
        assert "Policies" not in properties and "VpcConfig" not in properties, name
        assert "Role" in properties, name


@pytest.mark.skipif(not SAM_PYTHON.is_file(), reason=f"{SAM_PYTHON} is missing: run `make venv-sam`")
def test_sam_transform_generates_no_role_and_keeps_the_condition() -> None:
    """The template through SAM's own translator (as `sam deploy` sends it): no generated
    function role, VpcConfig and the VPC policy still behind HasVpc."""
    script = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
t = yaml_parse(open(sys.argv[1]).read())
for r in t["Resources"].values():
    if r["Type"] == "AWS::Serverless::Function":
        r["Properties"]["CodeUri"] = "s3://bucket/key"
class Policies:
    def load(self):
        return {}
print(json.dumps(transform(t, {}, Policies())))
"""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(TEMPLATE)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    resources = json.loads(done.stdout)["Resources"]
    roles = {n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert roles == {"IngestRole", "FlushRole", "ConnectionTestRole", "FlushSchedulerRole"}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            vpc = resource["Properties"]["VpcConfig"]
            assert vpc["Fn::If"][0] == "HasVpc" and vpc["Fn::If"][2] == {"Ref": "AWS::NoValue"}, name
    for role in ("IngestRole", "FlushRole", "ConnectionTestRole"):
        arns = resources[role]["Properties"]["ManagedPolicyArns"]
        unconditional = [a for a in arns if "Fn::If" not in a]
        assert all("VPCAccess" not in json.dumps(a) for a in unconditional), (role, arns)
        assert [a["Fn::If"][0] for a in arns if "Fn::If" in a] == ["HasVpc"], (role, arns)


def rule_holds(tpl: dict[str, Any], **given: Any) -> bool:
    stack = Stack(tpl, parameters(tpl, **given))
    rule = tpl["Rules"]["SubnetsAndSecurityGroupsTogether"]
    return all(stack.eval(a["Assert"]) for a in rule["Assertions"])


def test_rule_accepts_both_or_neither_and_refuses_one_alone() -> None:
    tpl = template()
    assert rule_holds(tpl)
    assert rule_holds(tpl, **WITH_VPC)
    assert not rule_holds(tpl, SubnetIds=WITH_VPC["SubnetIds"])
    assert not rule_holds(tpl, SecurityGroupIds=WITH_VPC["SecurityGroupIds"])
    description = tpl["Rules"]["SubnetsAndSecurityGroupsTogether"]["Assertions"][0]["AssertDescription"]
    assert "SubnetIds" in description and "SecurityGroupIds" in description
    # One alone never half-attaches either: HasVpc needs both.
    assert not Stack(tpl, parameters(tpl, SubnetIds=WITH_VPC["SubnetIds"])).condition("HasVpc")


def test_streaming_needs_scheduled_mode_and_runs_one_flush_at_a_time() -> None:
    tpl = template()
    rule = tpl["Rules"]["StreamingNeedsScheduledMode"]

    def holds(**given: Any) -> bool:
        stack = Stack(tpl, parameters(tpl, **given))
        return not stack.eval(rule["RuleCondition"]) or all(stack.eval(a["Assert"]) for a in rule["Assertions"])

    assert holds()
    assert holds(LoadMode="stream")
    assert holds(LoadMethod="streaming")
    assert not holds(LoadMethod="streaming", LoadMode="stream")
    assert "LoadMode scheduled" in rule["Assertions"][0]["AssertDescription"]
    for method, reserved in [("streaming", 1), ("sql_api", None)]:
        stack = Stack(tpl, parameters(tpl, LoadMethod=method))
        assert stack.function_properties("FlushFunction").get("ReservedConcurrentExecutions") == reserved
        # Every function reads it (Globals): ingest refuses streaming in stream mode at start.
        assert stack.eval(tpl["Globals"]["Function"])["Environment"]["Variables"]["TRACKLAYER_LOAD_METHOD"] == method


# ------------------------------------------------------------------------------------------------
# What the code emits, read from the Rust source
# ------------------------------------------------------------------------------------------------


@dataclass
class Emitted:
    namespace: str
    dimensions: list[str]
    metrics: dict[str, set[str]]  # function -> metric names
    modes: dict[str, set[str]]  # function -> Mode dimension values


def rust_emitted() -> Emitted:
    """Metric names, dimensions and Mode values, from the EMF code in shared/src."""
    report = (RUST_SOURCES / "report.rs").read_text()
    namespace = re.search(r'pub const NAMESPACE: &str = "(\w+)";', report).group(1)
    dimensions = re.findall(r'"(\w+)"', re.search(r'"Dimensions":\s*\[\[(.*?)\]\]', report).group(1))
    helpers = {
        m.group(1): set(re.findall(r'name:\s*"(\w+)"', m.group(2)))
        for m in re.finditer(r"pub fn (\w+)\([^)]*\)\s*->\s*Option<Metric>\s*\{(.*?)\n\}", report, re.S)
    }
    mode_names = set(re.findall(r'LoadMode::\w+ => "(\w+)"', (RUST_SOURCES / "ingest" / "config.rs").read_text()))
    metrics: dict[str, set[str]] = {}
    modes: dict[str, set[str]] = {}
    for path in sorted(RUST_SOURCES.rglob("*.rs")):
        text = path.read_text().split("#[cfg(test)]")[0]
        for function, mode in re.findall(r'emf_line\(\s*"([\w-]+)",\s*([^,]+),', text):
            # Metric { name: "X", .. } or Metric::count("X", ..) and the other unit constructors.
            literals = re.findall(r'Metric\s*\{\s*name:\s*"(\w+)"|Metric::\w+\(\s*"(\w+)"', text)
            names = {literal or constructed for literal, constructed in literals}
            for helper, found in helpers.items():
                if re.search(rf"\b{helper}\(", text):
                    names |= found
            metrics.setdefault(function, set()).update(names)
            literal = re.fullmatch(r'"(\w+)"', mode.strip())
            modes.setdefault(function, set()).update({literal.group(1)} if literal else mode_names)
    return Emitted(namespace, dimensions, metrics, modes)


def test_source_reading_finds_the_emitted_metrics() -> None:
    """Guards the reader itself: it must find both functions, their dimensions and modes."""
    emitted = rust_emitted()
    assert emitted.namespace == "TrackLayer"
    assert emitted.dimensions == ["Function", "Mode"]
    assert set(emitted.metrics) == {"ingest", "flush"}
    assert emitted.modes == {"ingest": {"stream", "scheduled"}, "flush": {"scheduled"}}
    assert {"EventsLoaded", "FailedMessages", "LoadedEventAgeSeconds"} <= emitted.metrics["ingest"]
    assert {"EventsLoaded", "FailedChunks", "Statements", "LoadedEventAgeSeconds"} <= emitted.metrics["flush"]


# ------------------------------------------------------------------------------------------------
# Alarms and dashboard: every metric, dimension and resource they name exists
# ------------------------------------------------------------------------------------------------

# AWS's own metrics are not in our code: the names are AWS's, from its metric lists
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html,
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html).
AWS_METRICS = {
    "AWS/SQS": ({"QueueName"}, {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
                               "ApproximateNumberOfMessagesNotVisible", "NumberOfMessagesSent"}),
    "AWS/Lambda": ({"FunctionName"}, {"Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions"}),
}  # fmt: skip


def reference(value: Any) -> str:
    """A dimension value as text: `${X.Attr}` / `${X}` for GetAtt / Ref, else the literal."""
    if isinstance(value, dict) and "GetAtt" in value:
        return "${" + value["GetAtt"] + "}"
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    return str(value)


def metric_problems(
    tpl: dict[str, Any], emitted: Emitted, where: str, namespace: str, name: str, dims: dict[str, str]
) -> list[str]:
    if namespace == emitted.namespace:
        return our_metric_problems(tpl, emitted, where, name, dims)
    if namespace not in AWS_METRICS:
        return [f"{where}: namespace {namespace!r} is neither ours nor AWS/SQS or AWS/Lambda"]
    return aws_metric_problems(tpl, where, namespace, name, dims)


def our_metric_problems(
    tpl: dict[str, Any], emitted: Emitted, where: str, name: str, dims: dict[str, str]
) -> list[str]:
    """A TrackLayer metric: the exact dimension set emf_line writes, a function that emits the
    metric, and Mode values that function writes."""
    problems = []
    function, mode = dims.get("Function"), dims.get("Mode")
    if sorted(dims) != sorted(emitted.dimensions):
        problems.append(f"{where}: {name} with dimensions {sorted(dims)}; the code emits {emitted.dimensions}")
    if function not in emitted.metrics:
        return [*problems, f"{where}: no function {function!r} emits metrics"]
    if name not in emitted.metrics[function]:
        problems.append(f"{where}: {function} emits no metric {name!r}")
    modes = set(tpl["Parameters"]["LoadMode"]["AllowedValues"]) if mode == "${LoadMode}" else {mode}
    if not modes <= emitted.modes[function]:
        problems.append(f"{where}: {function} emits Mode {sorted(emitted.modes[function])}, not {mode!r}")
    return problems


def aws_metric_problems(tpl: dict[str, Any], where: str, namespace: str, name: str, dims: dict[str, str]) -> list[str]:
    """An AWS metric: a name from AWS's list, its one dimension, naming a resource of ours."""
    resources = tpl["Resources"]
    problems = []
    keys, names = AWS_METRICS[namespace]
    if name not in names:
        problems.append(f"{where}: {namespace} has no metric {name!r} in AWS's list")
    if set(dims) != keys:
        problems.append(f"{where}: {namespace} {name} needs dimensions {sorted(keys)}, not {sorted(dims)}")
    for value in dims.values():
        kind, pattern = (
            ("AWS::SQS::Queue", r"\$\{(\w+)\.QueueName\}") if namespace == "AWS/SQS"
            else ("AWS::Serverless::Function", r"\$\{(\w+)\}")
        )  # fmt: skip
        found = re.fullmatch(pattern, value)
        if not found or resources.get(found.group(1), {}).get("Type") != kind:
            problems.append(f"{where}: {value!r} is not the name of a {kind} of this template")
    return problems


def alarm_problems(tpl: dict[str, Any], emitted: Emitted) -> list[str]:
    problems = []
    for alarm in of_type(tpl, "AWS::CloudWatch::Alarm"):
        properties = tpl["Resources"][alarm]["Properties"]
        metrics = [properties] if "MetricName" in properties else [
            m["MetricStat"]["Metric"] for m in properties["Metrics"] if "MetricStat" in m
        ]  # fmt: skip
        assert metrics, alarm
        for metric in metrics:
            dims = {d["Name"]: reference(d["Value"]) for d in metric.get("Dimensions", [])}
            problems += metric_problems(tpl, emitted, alarm, metric["Namespace"], metric["MetricName"], dims)
    return problems


def dashboard_json(tpl: dict[str, Any], mode: str) -> dict[str, Any]:
    """The dashboard body as CloudFormation renders it for `mode`, resource references left
    as `${...}` text (always inside JSON strings)."""
    stack = Stack(tpl, parameters(tpl, LoadMode=mode))
    body = stack.eval(tpl["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    return json.loads(body)


def widget_rows(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of a metric widget's rows, "." repeating the row above."""
    rows, previous = [], []
    for raw in widget["properties"].get("metrics", []):
        parts = [p for p in raw if not isinstance(p, dict)]
        parts = [previous[i] if p == "." and i < len(previous) else p for i, p in enumerate(parts)]
        previous = parts
        rows.append((parts[0], parts[1], dict(zip(parts[2::2], parts[3::2], strict=False))))
    return rows


def dashboard_problems(tpl: dict[str, Any], emitted: Emitted) -> list[str]:
    problems = []
    resources = tpl["Resources"]
    shown: set[tuple[str, str]] = set()
    alarms_listed: set[str] = set()
    for mode in tpl["Parameters"]["LoadMode"]["AllowedValues"]:
        stack = Stack(tpl, parameters(tpl, LoadMode=mode))
        body = dashboard_json(tpl, mode)
        for i, widget in enumerate(body["widgets"]):
            where = f"dashboard ({mode}) widget {i} {widget['properties'].get('title', widget['type'])!r}"
            for namespace, name, dims in widget_rows(widget):
                problems += metric_problems(tpl, emitted, where, namespace, name, dims)
                if namespace == emitted.namespace:
                    shown.add((dims.get("Function"), name))
            for arn in widget["properties"].get("alarms", []):
                found = re.fullmatch(r"\$\{(\w+)\.Arn\}", arn)
                if not found or resources.get(found.group(1), {}).get("Type") != "AWS::CloudWatch::Alarm":
                    problems.append(f"{where}: {arn!r} is not an alarm of this template")
                elif stack.resource(found.group(1)) is None:
                    problems.append(f"{where}: alarm {found.group(1)} does not exist in {mode} mode")
                else:
                    alarms_listed.add(found.group(1))
        for ref in re.findall(r"\$\{([^}]+)\}", json.dumps(body)):
            target = ref.split(".")[0]
            if target not in resources or stack.resource(target) is None:
                problems.append(f"dashboard ({mode}): ${{{ref}}} names no resource of this template")
    for function, names in emitted.metrics.items():
        problems += [
            f"dashboard: no widget shows {function}'s {n}" for n in sorted(names) if (function, n) not in shown
        ]
    missing = set(of_type(tpl, "AWS::CloudWatch::Alarm")) - alarms_listed
    problems += [f"dashboard: the alarm widget leaves out {a}" for a in sorted(missing)]
    return problems


def test_alarms_name_only_what_the_code_and_template_produce() -> None:
    assert alarm_problems(template(), rust_emitted()) == []


def test_dashboard_names_only_what_the_code_and_template_produce() -> None:
    tpl = template()
    assert dashboard_problems(tpl, rust_emitted()) == []
    body = dashboard_json(tpl, "scheduled")
    kinds = [w["type"] for w in body["widgets"]]
    assert kinds.count("alarm") == 1 and kinds.count("text") == 1
    rows = {(ns, name, next(iter(dims.values()))) for w in body["widgets"] for ns, name, dims in widget_rows(w)}
    for queue in ("EventsQueue", "StagingQueue", "EventsDeadLetterQueue", "StagingDeadLetterQueue"):
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"${{{queue}.QueueName}}") in rows, queue
    for queue in ("EventsQueue", "StagingQueue"):
        assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", f"${{{queue}.QueueName}}") in rows, queue
    for function in functions(tpl):
        for metric in ("Errors", "Throttles"):
            assert ("AWS/Lambda", metric, f"${{{function}}}") in rows, (function, metric)
    assert {("AWS/Lambda", "Duration", "${IngestFunction}"), ("AWS/Lambda", "Duration", "${FlushFunction}")} <= rows


def drifted(tpl: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The template with `old` replaced by `new` in the dashboard body."""
    changed = copy.deepcopy(tpl)
    sub = changed["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Sub"]
    assert old in sub[0], old
    sub[0] = sub[0].replace(old, new, 1)
    return changed


def test_drift_between_code_and_dashboard_is_caught() -> None:
    tpl, emitted = template(), rust_emitted()
    cases = {
        '"EventsLoaded", "Function", "flush"': (
            '"EventLoaded", "Function", "flush"',
            "flush emits no metric 'EventLoaded'",
        ),
        '"Mode", "scheduled", {"label": "statements"}': ('"Mode", "stream", {"label": "statements"}', "not 'stream'"),
        '"Function", "flush", "Mode", "scheduled", {"label": "statements"}':
            ('"Function", "flush", {"label": "statements"}', "with dimensions ['Function']"),
        '"${StagingQueue.QueueName}", {"label": "staging queue (chunks)"}':
            ('"${StagingQueues.QueueName}", {"label": "staging queue (chunks)"}', "not the name of a AWS::SQS::Queue"),
        '["AWS/Lambda", "Errors"': ('["AWS/Lambdas", "Errors"', "namespace 'AWS/Lambdas'"),
        '"${EventsBacklogAlarm.Arn}"': ('"${EventsBacklog.Arn}"', "not an alarm of this template"),
    }  # fmt: skip
    for old, (new, expected) in cases.items():
        problems = dashboard_problems(drifted(tpl, old, new), emitted)
        assert any(expected in p for p in problems), (new, problems)
    # A metric the code emits and no widget shows is drift too.
    less = copy.deepcopy(emitted)
    less.metrics["flush"].add("ChunksTaken")
    assert "dashboard: no widget shows flush's ChunksTaken" in dashboard_problems(tpl, less)


def test_every_alarm_notifies_the_alarm_topic_when_set() -> None:
    tpl = template()
    alarms = of_type(tpl, "AWS::CloudWatch::Alarm")
    assert set(alarms) >= {"EventsDeadLetterAlarm", "StagingDeadLetterAlarm", "IngestFailedLoadsAlarm",
                           "FlushFailedLoadsAlarm", "EventsBacklogAlarm", "StagingBacklogAlarm"}  # fmt: skip
    for alarm in alarms:
        properties = tpl["Resources"][alarm]["Properties"]
        assert properties["AlarmActions"] == ALARM_ACTIONS, alarm
        assert properties["OKActions"] == ALARM_ACTIONS, alarm
    assert tpl["Conditions"]["HasAlarmTopic"] == {"Not": [{"Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    topic = "arn:aws:sns:us-east-1:123456789012:tracklayer-alarms"
    for given, expected in (({}, None), ({"AlarmTopicArn": topic}, [topic])):
        stack = Stack(tpl, parameters(tpl, **given))
        for alarm in alarms:
            properties = stack.resource(alarm)
            if properties is not None:
                assert properties.get("AlarmActions") == expected, (alarm, given)


ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def arithmetic(expression: str, variables: dict[str, float]) -> float:
    """Evaluates a metric-math expression of numbers, + - * / and metric ids."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp):
            return ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return variables[node.id]
        raise AssertionError(f"unexpected {ast.dump(node)} in {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def test_staging_backlog_alarm_fires_past_two_flush_periods() -> None:
    tpl = template()
    for minutes, given in ((60, {}), (60, {"FlushPeriodMinutes": 60}), (15, {"FlushPeriodMinutes": 15})):
        stack = Stack(tpl, parameters(tpl, **given))
        alarm = stack.resource("StagingBacklogAlarm")
        (stat,) = [m for m in alarm["Metrics"] if "MetricStat" in m]
        assert stat["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "QueueName", "Value": {"GetAtt": "StagingQueue.QueueName"}}
        ]
        (math,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
        threshold, two_periods = alarm["Threshold"], 2 * minutes * 60
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert arithmetic(math["Expression"], {stat["Id"]: two_periods + 1}) > threshold
        assert arithmetic(math["Expression"], {stat["Id"]: two_periods}) <= threshold
        schedule = stack.resource("FlushSchedule")["ScheduleExpression"]
        assert schedule == f"rate({minutes} minutes)"
        flush_env = stack.resource("FlushFunction")["Environment"]["Variables"]
        assert flush_env["TRACKLAYER_FLUSH_PERIOD_MINUTES"] in (minutes, str(minutes))
    cron = "cron(0 */2 * * ? *)"
    stack = Stack(tpl, parameters(tpl, FlushScheduleExpression=cron, FlushPeriodMinutes=120))
    assert stack.resource("FlushSchedule")["ScheduleExpression"] == cron
    assert Stack(tpl, parameters(tpl, LoadMode="stream")).resource("StagingBacklogAlarm") is None


def test_streaming_flushes_every_minute_by_default_with_a_valid_rate_expression() -> None:
    tpl = template()
    for given in ({"LoadMethod": "streaming"}, {"FlushPeriodMinutes": 1}):
        stack = Stack(tpl, parameters(tpl, **given))
        # EventBridge refuses rate(1 minutes): a value of 1 takes the singular unit
        assert stack.resource("FlushSchedule")["ScheduleExpression"] == "rate(1 minute)"
        flush_env = stack.resource("FlushFunction")["Environment"]["Variables"]
        assert flush_env["TRACKLAYER_FLUSH_PERIOD_MINUTES"] in (1, "1")
        alarm = stack.resource("StagingBacklogAlarm")
        (stat,) = [m for m in alarm["Metrics"] if "MetricStat" in m]
        (math,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
        assert arithmetic(math["Expression"], {stat["Id"]: 121}) > alarm["Threshold"]
        assert arithmetic(math["Expression"], {stat["Id"]: 120}) <= alarm["Threshold"]
    stack = Stack(tpl, parameters(tpl, LoadMethod="streaming", FlushPeriodMinutes=5))
    assert stack.resource("FlushSchedule")["ScheduleExpression"] == "rate(5 minutes)"


def test_events_backlog_alarm_uses_the_configured_limit() -> None:
    tpl = template()
    assert tpl["Parameters"]["EventsQueueMaxAgeSeconds"]["Default"] == 900
    for limit in (900, 3600):
        alarm = Stack(tpl, parameters(tpl, EventsQueueMaxAgeSeconds=limit)).resource("EventsBacklogAlarm")
        assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateAgeOfOldestMessage", limit)
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"GetAtt": "EventsQueue.QueueName"}}]


def test_outputs_give_the_dashboard_url_and_the_redrive_arns() -> None:
    tpl = template()
    outputs = tpl["Outputs"]
    url = Stack(tpl, parameters(tpl)).eval(outputs["DashboardUrl"]["Value"])
    assert (
        url == "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=${Dashboard}"
    )
    for queue in ("EventsQueue", "EventsDeadLetterQueue", "StagingQueue", "StagingDeadLetterQueue"):
        assert outputs[f"{queue}Arn"]["Value"] == {"GetAtt": f"{queue}.Arn"}, queue
