"""template.yaml: least privilege and Lambda's queue rules, read from the template itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


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
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 (a SafeLoader subclass)


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
