"""`stack.py up` left moto and the local Snowflake provisioned as the Lambdas expect."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from sflocal import Http, Identity, SqlApi, fingerprint

ENV_KEYS = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "TRACKLAYER_SECRET_ID",
    "TRACKLAYER_EVENTS_QUEUE_URL",
    "TRACKLAYER_EVENTS_DLQ_URL",
    "TRACKLAYER_STAGING_QUEUE_URL",
    "TRACKLAYER_STAGING_DLQ_URL",
    "SNOWFLAKE_EMULATOR_URL",
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "TRACKLAYER_LOCAL_KEY",
    "PYTHON",
]


def aws(stack_env: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack_env["AWS_ENDPOINT_URL"],
        region_name=stack_env["AWS_REGION"],
        aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
    )


def test_stack_env_is_complete(stack_env: dict[str, str]) -> None:
    assert sorted(stack_env) == sorted(ENV_KEYS)
    assert (stack_env["AWS_REGION"], stack_env["AWS_ACCESS_KEY_ID"]) == ("us-east-1", "test")
    assert (stack_env["SNOWFLAKE_ACCOUNT"], stack_env["SNOWFLAKE_USER"]) == ("LOCALTEST", "TRACKLAYER_SVC")
    assert Path(stack_env["TRACKLAYER_LOCAL_KEY"]).is_absolute()
    assert os.access(stack_env["PYTHON"], os.X_OK)


@pytest.mark.parametrize("queue", ["EVENTS", "STAGING"])
def test_queues_redrive_to_their_dlq(stack_env: dict[str, str], queue: str) -> None:
    sqs = aws(stack_env, "sqs")
    main = sqs.get_queue_attributes(QueueUrl=stack_env[f"TRACKLAYER_{queue}_QUEUE_URL"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(QueueUrl=stack_env[f"TRACKLAYER_{queue}_DLQ_URL"], AttributeNames=["All"])
    redrive = json.loads(main["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == int(os.environ.get("TRACKLAYER_MAX_RECEIVE_COUNT", "5"))
    assert main["Attributes"]["VisibilityTimeout"] == "60"
    assert dlq["Attributes"]["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def test_secret_holds_the_connection_settings(stack_env: dict[str, str]) -> None:
    secret = json.loads(
        aws(stack_env, "secretsmanager").get_secret_value(SecretId="tracklayer/snowflake")["SecretString"]
    )
    assert {k: v for k, v in secret.items() if k != "private_key"} == {
        "account": "LOCALTEST",
        "user": "TRACKLAYER_SVC",
        "role": "TRACKLAYER_WRITER",
        "warehouse": "TRACKLAYER_WH",
        "database": "TRACKLAYER",
        "schema": "EVENTS",
        "host": stack_env["SNOWFLAKE_EMULATOR_URL"],
    }
    assert secret["private_key"] == Path(stack_env["TRACKLAYER_LOCAL_KEY"]).read_text()
    assert secret["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def test_the_local_key_is_registered_for_the_service_user(stack_env: dict[str, str], http: Http) -> None:
    key = serialization.load_pem_private_key(Path(stack_env["TRACKLAYER_LOCAL_KEY"]).read_bytes(), password=None)
    service = Identity(stack_env["SNOWFLAKE_ACCOUNT"], stack_env["SNOWFLAKE_USER"], key)
    api = SqlApi(http, service.headers(), "TRACKLAYER", "EVENTS")
    assert api.rows(
        "SELECT CURRENT_USER(), CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()"
    ) == [["TRACKLAYER_SVC", "TRACKLAYER_WRITER", "TRACKLAYER_WH", "TRACKLAYER", "EVENTS"]]


def test_the_service_user_is_listed_with_its_fingerprint(stack_env: dict[str, str], http: Http) -> None:
    key = serialization.load_pem_private_key(Path(stack_env["TRACKLAYER_LOCAL_KEY"]).read_bytes(), password=None)
    users = http.request("GET", "/__emulator/users").body
    (service,) = [u for u in users if (u["account"], u["user"]) == ("LOCALTEST", "TRACKLAYER_SVC")]
    assert service["fingerprints"] == [fingerprint(key)]
    assert (service["default_role"], service["default_warehouse"]) == ("TRACKLAYER_WRITER", "TRACKLAYER_WH")
