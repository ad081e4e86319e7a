"""`make sam-deploy` deploys the build `make sam-build` recorded, as that build's Architecture.

No real `sam build` runs here (three release + LTO builds take minutes). Each test lays out a
build directory as sam build leaves it (template.yaml, <Function>/bootstrap) and records it with
`infra/sam/release.py record`, the same `write_record` that `make sam-build` runs after its sam
build: it reads each bootstrap's ELF header, so the bootstraps here are ELF headers of the
architecture under test (and, where a real binary is needed, copies of this machine's `true`).
The deploy runs as `make sam-deploy DRY_RUN=1`; the command it prints is then parsed by SAM CLI's
own `sam deploy` options (samconfig.toml included), which give the CloudFormation parameters a
real deploy would send. No AWS credentials are visible to make, so a deploy that did run would
fail. These tests need no local stack.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SAM_PYTHON = REPO / ".venv-sam" / "bin" / "python"
RELEASE = REPO / "infra" / "sam" / "release.py"
FUNCTIONS = ("IngestFunction", "FlushFunction", "ConnectionTestFunction")
ELF_MACHINES = {"arm64": 0xB7, "x86_64": 0x3E}
SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:tracklayer/snowflake-AbCdEf"
OTHER = {"arm64": "x86_64", "x86_64": "arm64"}
# The make settings a caller may have set, and the variables through which an outer make
# (`make test ARCH=...`) would hand its own command-line settings down.
USER_SETTINGS = (
    "ARCH",
    "SECRET_ARN",
    "PARAMS",
    "GUIDED",
    "DRY_RUN",
    "SAM_BUILD_DIR",
    "SAM_CONFIG",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
)

# SAM CLI's `sam deploy` reads the argv as it would before deploying: its options, samconfig.toml,
# the template, and the parameter list it sends to CloudFormation's CreateChangeSet.
SAM_READS = """
import json, sys
from samcli.commands.deploy.command import cli
from samcli.commands.deploy.deploy_context import DeployContext
from samcli.yamlhelper import yaml_parse
argv = json.loads(sys.argv[1])
params = cli.make_context("deploy", argv).params
template = yaml_parse(open(params["template_file"]).read())
cfn = DeployContext.merge_parameters(template, params["parameter_overrides"])
print(json.dumps({
    "template_file": params["template_file"],
    "stack_name": params["stack_name"],
    "guided": params["guided"],
    "parameters": {p["ParameterKey"]: p["ParameterValue"] for p in cfn if "ParameterValue" in p},
}))
"""


@pytest.fixture(autouse=True)
def clean_emulator() -> None:
    """Replaces conftest's emulator reset: nothing here talks to the local stack."""


def elf_header(architecture: str) -> bytes:
    """The 64-byte ELF64 little-endian header of an executable for `architecture`."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    return ident + struct.pack("<HHI", 3, ELF_MACHINES[architecture], 1) + bytes(64 - 24)


def host_architecture() -> str:
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]


def lay_out_build(build_dir: Path, bootstrap: bytes) -> Path:
    """A build directory as sam build leaves it: the template and one bootstrap per function."""
    build_dir.mkdir()
    shutil.copy(REPO / "template.yaml", build_dir / "template.yaml")
    for function in FUNCTIONS:
        (build_dir / function).mkdir()
        (build_dir / function / "bootstrap").write_bytes(bootstrap)
    return build_dir


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS and not k.startswith("AWS_")}
    base |= {
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(command, cwd=REPO, env=base | env, capture_output=True, text=True, timeout=120, check=False)


def record(build_dir: Path, architecture: str) -> subprocess.CompletedProcess[str]:
    """What `make sam-build` does after its sam build: check the binaries, write the record."""
    return run([str(SAM_PYTHON), str(RELEASE), "record", "--build-dir", str(build_dir), "--architecture", architecture])


def recorded_build(tmp_path: Path, architecture: str) -> Path:
    build_dir = lay_out_build(tmp_path / "build", elf_header(architecture))
    recorded = record(build_dir, architecture)
    assert recorded.returncode == 0, recorded.stderr
    return build_dir


def sam_deploy(build_dir: Path, config: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    make = ["make", "--no-print-directory", "sam-deploy", f"SAM_BUILD_DIR={build_dir}", f"SAM_CONFIG={config}"]
    return run(make, DRY_RUN="1", **settings)


def printed_command(deployed: subprocess.CompletedProcess[str]) -> list[str]:
    assert deployed.returncode == 0, deployed.stderr
    lines = deployed.stdout.splitlines()
    assert "==> DRY_RUN: not running" in lines, deployed.stdout
    argv = shlex.split(lines[lines.index("==> DRY_RUN: not running") + 1])
    assert argv[:2] == [str(SAM_PYTHON.parent / "sam"), "deploy"]
    return argv


def sam_reads(argv: list[str]) -> dict[str, Any]:
    read = run([str(SAM_PYTHON), "-c", SAM_READS, json.dumps(argv[2:])], SAM_CLI_TELEMETRY="0")
    assert read.returncode == 0, read.stderr
    return json.loads(read.stdout)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The repository's samconfig.toml, copied so a guided deploy in a test could not change it."""
    copy = tmp_path / "samconfig.toml"
    shutil.copy(REPO / "samconfig.toml", copy)
    return copy


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_deploy_passes_the_architecture_the_build_recorded(tmp_path: Path, config: Path, architecture: str) -> None:
    build_dir = recorded_build(tmp_path, architecture)
    saved = json.loads((build_dir / "tracklayer-build.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert saved["architecture"] == architecture
    assert saved["git_commit"] == head.stdout.strip()
    assert sorted(saved["functions"]) == sorted(FUNCTIONS)

    deployed = sam_deploy(
        build_dir, config, SECRET_ARN=SECRET, PARAMS='LoadMode=stream FlushScheduleExpression="rate(2 hours)"'
    )
    sam = sam_reads(printed_command(deployed))

    assert sam["parameters"] == {
        "Architecture": architecture,
        "SnowflakeSecretArn": SECRET,
        "LoadMode": "stream",
        "FlushScheduleExpression": "rate(2 hours)",
    }
    assert sam["template_file"] == str(build_dir / "template.yaml")
    assert sam["stack_name"] == "tracklayer-snowflake"
    assert sam["guided"] is False
    assert f"Deploying the {architecture} build of {head.stdout.strip()[:12]}" in deployed.stdout


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
def test_built_template_allows_only_the_recorded_architecture(tmp_path: Path, architecture: str) -> None:
    """Even a `sam deploy --guided` typed by hand cannot declare another Architecture."""
    build_dir = recorded_build(tmp_path, architecture)
    read = run(
        [
            str(SAM_PYTHON),
            "-c",
            (
                "import json, sys; from samcli.yamlhelper import yaml_parse; "
                "print(json.dumps(yaml_parse(open(sys.argv[1]).read())['Parameters']['Architecture']))"
            ),
            str(build_dir / "template.yaml"),
        ]
    )
    parameter = json.loads(read.stdout)
    assert parameter["AllowedValues"] == [architecture]
    assert parameter["Default"] == architecture


def test_deploy_refuses_when_no_build_was_recorded(tmp_path: Path, config: Path) -> None:
    build_dir = lay_out_build(tmp_path / "build", elf_header("arm64"))
    deployed = sam_deploy(build_dir, config, SECRET_ARN=SECRET)
    assert deployed.returncode != 0
    assert f"no recorded build to deploy: {build_dir}/tracklayer-build.json does not exist" in deployed.stderr
    assert "Run `make sam-build` first" in deployed.stderr
    assert "DRY_RUN" not in deployed.stdout


@pytest.mark.parametrize("architecture", ["arm64", "x86_64"])
@pytest.mark.parametrize("ask", ["ARCH", "PARAMS"])
def test_deploy_refuses_an_architecture_other_than_the_build(
    tmp_path: Path, config: Path, architecture: str, ask: str
) -> None:
    build_dir = recorded_build(tmp_path, architecture)
    other = OTHER[architecture]
    setting = {"ARCH": other} if ask == "ARCH" else {"PARAMS": f"Architecture={other}"}
    deployed = sam_deploy(build_dir, config, SECRET_ARN=SECRET, **setting)
    assert deployed.returncode != 0
    assert f"asks for Architecture={other}, but the build in {build_dir} is {architecture}" in deployed.stderr
    assert f"Run `make sam-build ARCH={other}`" in deployed.stderr
    assert "DRY_RUN" not in deployed.stdout


def test_deploy_accepts_asking_for_the_architecture_of_the_build(tmp_path: Path, config: Path) -> None:
    build_dir = recorded_build(tmp_path, "x86_64")
    deployed = sam_deploy(build_dir, config, SECRET_ARN=SECRET, ARCH="x86_64", PARAMS="Architecture=x86_64")
    assert sam_reads(printed_command(deployed))["parameters"]["Architecture"] == "x86_64"


def test_deploy_refuses_a_binary_changed_after_the_build(tmp_path: Path, config: Path) -> None:
    build_dir = recorded_build(tmp_path, "arm64")
    (build_dir / "FlushFunction" / "bootstrap").write_bytes(elf_header("x86_64"))
    deployed = sam_deploy(build_dir, config, SECRET_ARN=SECRET)
    assert deployed.returncode != 0
    assert f"{build_dir}/FlushFunction/bootstrap changed after `make sam-build` recorded the build" in deployed.stderr


def test_record_refuses_binaries_of_another_architecture(tmp_path: Path) -> None:
    """Real executables of this machine: recorded as its architecture, refused as the other."""
    true = Path(shutil.which("true") or "/bin/true").resolve()
    build_dir = lay_out_build(tmp_path / "build", true.read_bytes())
    host, other = host_architecture(), OTHER[host_architecture()]
    names = {"arm64": "aarch64", "x86_64": "x86-64"}

    refused = record(build_dir, other)
    assert refused.returncode != 0
    assert f"IngestFunction/bootstrap is {names[host]}, not {names[other]} ({other})" in refused.stderr
    assert not (build_dir / "tracklayer-build.json").exists()

    assert record(build_dir, host).returncode == 0
    saved = json.loads((build_dir / "tracklayer-build.json").read_text())
    assert {f["elf_machine"] for f in saved["functions"].values()} == {names[host]}


def test_saved_overrides_are_passed_but_the_build_decides_the_architecture(tmp_path: Path) -> None:
    """A guided deploy saves parameter_overrides in samconfig.toml; passing any override replaces them."""
    build_dir = recorded_build(tmp_path, "arm64")
    config = tmp_path / "samconfig.toml"
    text = (
        (REPO / "samconfig.toml")
        .read_text()
        .replace(
            "[default.deploy.parameters]\n",
            "[default.deploy.parameters]\n"
            f'parameter_overrides = "SnowflakeSecretArn=\\"{SECRET}\\" '
            'LoadMode=\\"stream\\" Architecture=\\"x86_64\\""\n',
        )
    )
    config.write_text(text)

    deployed = sam_deploy(build_dir, config, PARAMS="MemorySize=512")
    sam = sam_reads(printed_command(deployed))
    assert sam["parameters"] == {
        "Architecture": "arm64",
        "SnowflakeSecretArn": SECRET,
        "LoadMode": "stream",
        "MemorySize": "512",
    }
    assert f"{config} saved Architecture=x86_64; passing arm64, the build's" in deployed.stdout


def test_guided_deploy_is_passed_on_and_may_ask_for_the_secret(tmp_path: Path, config: Path) -> None:
    build_dir = recorded_build(tmp_path, "arm64")
    sam = sam_reads(printed_command(sam_deploy(build_dir, config, GUIDED="1")))
    assert sam["guided"] is True
    assert sam["parameters"] == {"Architecture": "arm64"}


def test_deploy_without_a_secret_says_how_to_give_it(tmp_path: Path, config: Path) -> None:
    deployed = sam_deploy(recorded_build(tmp_path, "arm64"), config)
    assert deployed.returncode != 0
    assert "no SnowflakeSecretArn: run `make sam-deploy SECRET_ARN=arn:aws:secretsmanager:...`" in deployed.stderr


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("Loadmode=stream", "PARAMS sets Loadmode, which template.yaml does not declare (sam would ignore it)"),
        ("LoadMode=Stream", "PARAMS sets LoadMode=Stream: template.yaml allows stream, scheduled"),
    ],
)
def test_deploy_refuses_parameters_the_template_would_not_take(
    tmp_path: Path, config: Path, params: str, message: str
) -> None:
    deployed = sam_deploy(recorded_build(tmp_path, "arm64"), config, SECRET_ARN=SECRET, PARAMS=params)
    assert deployed.returncode != 0
    assert message in deployed.stderr
