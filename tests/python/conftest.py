"""Fixtures for tests against a running local stack (`.venv/bin/python -m tracklayer_local.stack up`).

The stack is found through STACK_DIR/stack.env (default <repo>/.local). If it is missing or the
servers do not answer, every test fails with a message saying so: nothing is skipped.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from sflocal import Control, Http, Identity, SqlApi
from tracklayer_local.harness import read_env_file, stack_env_path

DATABASE, SCHEMA = "TRACKLAYER", "PYTEST"
START_HINT = "start it with `.venv/bin/python -m tracklayer_local.stack up` from the repository root"


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    path = stack_env_path()
    if not path.exists():
        pytest.fail(f"local stack not set up: {path} does not exist; {START_HINT}", pytrace=False)
    env = read_env_file(path)
    for name, url in (
        ("local Snowflake", env["SNOWFLAKE_EMULATOR_URL"] + "/__emulator/health"),
        ("moto", env["AWS_ENDPOINT_URL"] + "/moto-api/"),
    ):
        if not answers(url):
            pytest.fail(f"local stack not running: {name} does not answer at {url}; {START_HINT}", pytrace=False)
    return env


@pytest.fixture(scope="session")
def http(stack_env: dict[str, str]) -> Http:
    return Http(stack_env["SNOWFLAKE_EMULATOR_URL"])


@pytest.fixture(scope="session")
def control(http: Http) -> Control:
    return Control(http)


@pytest.fixture(autouse=True)
def clean_emulator(control: Control) -> Iterator[None]:
    """Each test starts and ends with no faults, default settings and an empty request report."""
    control.reset()
    yield
    control.reset()


@pytest.fixture(scope="session")
def loader(control: Control) -> Identity:
    """A registered key-pair user the tests run statements as."""
    identity = Identity("PYTEST", "LOADER")
    control.register(identity, default_role="PYTEST_ROLE", roles=["TRACKLAYER_WRITER"])
    return identity


@pytest.fixture(scope="session")
def schema(http: Http, loader: Identity) -> Iterator[str]:
    """TRACKLAYER.PYTEST, dropped after the session (the loader's EVENTS schema stays untouched)."""
    admin = SqlApi(http, loader.headers(), DATABASE, "EVENTS")
    admin.rows(f"CREATE SCHEMA IF NOT EXISTS {DATABASE}.{SCHEMA}")
    yield SCHEMA
    admin.rows(f"DROP SCHEMA IF EXISTS {DATABASE}.{SCHEMA} CASCADE")


@pytest.fixture
def api(http: Http, loader: Identity, schema: str) -> SqlApi:
    return SqlApi(http, loader.headers(), DATABASE, schema)


@pytest.fixture
def table(api: SqlApi) -> str:
    """A fresh events table in TRACKLAYER.PYTEST."""
    name = f"EVENTS_{uuid.uuid4().hex[:8].upper()}"
    api.rows(f"CREATE TABLE {name} (EVENT_ID STRING, OCCURRED_AT TIMESTAMP_NTZ, AMOUNT NUMBER(18,4), PAYLOAD VARIANT)")
    return name
