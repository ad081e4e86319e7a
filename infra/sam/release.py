"""`make sam-build` and `make sam-deploy`: one architecture from the build to the deploy.

    .venv-sam/bin/python infra/sam/release.py build  [--architecture arm64|x86_64]
    .venv-sam/bin/python infra/sam/release.py record --architecture arm64|x86_64 [--reason TEXT]
    .venv-sam/bin/python infra/sam/release.py deploy [--architecture A] [--secret-arn ARN]
                                                     [--params "K=V ..."] [--guided 1] [--dry-run 1]

Run from the repository root with .venv-sam's python (it reads templates and parameter overrides
with SAM CLI's own parsers). Every command takes --build-dir (.aws-sam/build); deploy also takes
--config-file (samconfig.toml).

Why: `sam build --parameter-overrides Architecture=...` keeps nothing of that value in its output.
A later `sam deploy` declares whatever Architecture its own overrides, samconfig.toml, the stack's
previous value or the template's default (arm64) say, whatever the binaries are. So:

- ``build`` chooses the architecture (arm64 unless asked otherwise; its Rust target is added with
  `rustup target add` where it is missing; x86_64 only when arm64's target cannot be had, saying
  why), runs `sam build` for it, then ``record``s the build.
- ``record`` checks that every rust-cargolambda function's bootstrap is an ELF binary of that
  architecture, narrows the built template's Architecture parameter to that one value (so even a
  `sam deploy --guided` typed by hand cannot declare another), and writes
  <build dir>/tracklayer-build.json: architecture, Rust target, why, git commit, time, and each
  binary's ELF machine and SHA-256.
- ``deploy`` reads that record and passes its Architecture with the other parameters (saved ones
  from samconfig.toml, then --params, then --secret-arn) to `sam deploy`. It refuses when there is
  no record, when a binary changed since it was recorded, when asked for another Architecture,
  or when a parameter is unknown to the template or outside its AllowedValues/AllowedPattern.
  With --dry-run it prints the exact command and runs nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAM = Path(sys.prefix) / "bin" / "sam"
RECORD_NAME = "tracklayer-build.json"
DEFAULT_ARCHITECTURE = "arm64"
# sam build needs a value for the required parameter; nothing is deployed with it.
BUILD_ONLY_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:build-only"


@dataclass(frozen=True)
class Architecture:
    """A Lambda architecture, the Rust target cargo-lambda builds for it, and its ELF e_machine."""

    name: str
    rust_target: str
    elf_machine: int
    elf_name: str


ARCHITECTURES = {
    "arm64": Architecture("arm64", "aarch64-unknown-linux-gnu", 0xB7, "aarch64"),
    "x86_64": Architecture("x86_64", "x86_64-unknown-linux-gnu", 0x3E, "x86-64"),
}


class ReleaseError(Exception):
    """A refusal: what is wrong and what to run instead."""


class TargetUnavailable(Exception):
    """A Rust target that is not installed and could not be added; the message says why."""


def architecture(name: str, setting: str) -> Architecture:
    """The architecture called `name`, or a refusal naming the setting that gave it."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ReleaseError(f"{setting}={name} is not a Lambda architecture: use arm64 or x86_64") from None


def truthy(value: str, setting: str) -> bool:
    """A yes/no make setting (GUIDED, DRY_RUN): unset, 0 or 1."""
    if value.strip().lower() in ("", "0", "false", "no"):
        return False
    if value.strip().lower() in ("1", "true", "yes"):
        return True
    raise ReleaseError(f"{setting}={value!r}: use 1 (or leave it unset)")


# --- the Rust target -------------------------------------------------------------------------


def target_installed(target: str) -> bool:
    """Whether the toolchain cargo uses here has the standard library for `target`."""
    try:
        out = subprocess.run(
            ["rustc", "--print", "target-libdir", "--target", target],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        raise ReleaseError("rustc is not on PATH: install Rust (https://rustup.rs)") from None
    libdir = Path(out.stdout.strip())
    return out.returncode == 0 and libdir.is_dir() and any(libdir.glob("libcore-*.rlib"))


def ensure_target(target: str) -> str:
    """Makes `target` available, adding it with rustup if needed; says how it was found."""
    if target_installed(target):
        return f"the Rust target {target} is installed"
    rustup = shutil.which("rustup")
    if rustup is None:
        raise TargetUnavailable(f"the Rust target {target} is not installed and there is no rustup to add it")
    print(f"==> rustup target add {target}", flush=True)
    try:
        added = subprocess.run(
            [rustup, "target", "add", target], cwd=REPO, env=os.environ | {"RUST_BACKTRACE": "0"},
            capture_output=True, text=True, timeout=900, check=False,
        )
    except subprocess.TimeoutExpired:
        raise TargetUnavailable(f"`rustup target add {target}` did not finish in 15 minutes") from None
    if added.returncode != 0 or not target_installed(target):
        why = rustup_failure(added.stderr + added.stdout) or f"exit status {added.returncode}"
        raise TargetUnavailable(f"`rustup target add {target}` failed: {why}")
    return f"added the Rust target {target} with rustup"


def rustup_failure(output: str) -> str:
    """rustup's error line and its innermost cause ("Connection refused", "dns error", ...)."""
    lines = [line.strip() for line in output.split("Stack backtrace:")[0].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    causes = [re.sub(r"^\d+: ", "", line) for line in lines if re.match(r"\d+: ", line)]
    chain = (errors[-1].split(": ") if errors else []) + causes
    return ": ".join(chain if len(chain) <= 3 else [*chain[:2], "...", chain[-1]])


def choose_architecture(requested: str) -> tuple[Architecture, str]:
    """The architecture to build and why: as asked, else arm64, else (no arm64 target) x86_64."""
    if requested:
        arch = architecture(requested, "ARCH")
        try:
            return arch, f"ARCH={arch.name} asked for; {ensure_target(arch.rust_target)}"
        except TargetUnavailable as e:
            other = "x86_64" if arch.name == "arm64" else "arm64"
            raise ReleaseError(
                f"cannot build {arch.name}: {e}. Run `rustup target add {arch.rust_target}` (it needs the "
                f"internet once), or build {other} with `make sam-build ARCH={other}`"
            ) from None
    arm64 = ARCHITECTURES[DEFAULT_ARCHITECTURE]
    try:
        return arm64, f"arm64 is the default (the template's, cheaper per GB-second); {ensure_target(arm64.rust_target)}"
    except TargetUnavailable as e:
        fallback = ARCHITECTURES["x86_64"]
        try:
            found = ensure_target(fallback.rust_target)
        except TargetUnavailable as f:
            raise ReleaseError(f"cannot build arm64 ({e}) nor x86_64 ({f})") from None
        return fallback, (
            f"FALLBACK to x86_64, not the default arm64: {e}. To build arm64, run "
            f"`rustup target add {arm64.rust_target}` where the internet is reachable, then `make sam-build` "
            f"again; {found}"
        )


# --- the build record ------------------------------------------------------------------------


def record_path(build_dir: Path) -> Path:
    """Where the record of the build in `build_dir` lives (sam build empties the folder first)."""
    return build_dir / RECORD_NAME


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation template as SAM CLI reads it (short-form tags included)."""
    from samcli.yamlhelper import yaml_parse

    if not path.is_file():
        raise ReleaseError(f"{path} does not exist: run `make sam-build`")
    return yaml_parse(path.read_text())


def rust_functions(template: dict[str, Any]) -> list[str]:
    """Logical ids of the functions sam builds with cargo-lambda (each gets <id>/bootstrap)."""
    return [
        logical_id
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
        and resource.get("Metadata", {}).get("BuildMethod") == "rust-cargolambda"
    ]


def elf_machine(path: Path) -> str:
    """The binary's architecture as `file` names it (aarch64, x86-64), from its ELF header."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return "not an ELF binary"
    (machine,) = struct.unpack("<H" if header[5] == 1 else ">H", header[18:20])
    names = {a.elf_machine: a.elf_name for a in ARCHITECTURES.values()}
    return names.get(machine, f"ELF machine {machine:#x}")


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git(*args: str) -> str:
    """git's output in the repository, or "" when git is missing or fails."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def narrow_architecture(template_path: Path, arch: Architecture) -> None:
    """Lets the built template's Architecture parameter take only the architecture of the build."""
    from samcli.yamlhelper import yaml_dump

    template = load_template(template_path)
    parameter = template["Parameters"]["Architecture"]
    parameter["Default"] = arch.name
    parameter["AllowedValues"] = [arch.name]
    parameter["Description"] = (
        f"Fixed by make sam-build: this build's binaries are {arch.name} ({arch.elf_name}). "
        f"Run `make sam-build ARCH=...` to deploy another architecture."
    )
    template_path.write_text(yaml_dump(template))


def write_record(build_dir: Path, arch_name: str, reason: str) -> dict[str, Any]:
    """Checks the build's binaries are `arch_name`, narrows its template, writes and returns the record."""
    arch = architecture(arch_name, "--architecture")
    template_path = build_dir / "template.yaml"
    functions = rust_functions(load_template(template_path))
    if not functions:
        raise ReleaseError(f"{template_path} has no rust-cargolambda function: run `make sam-build`")
    binaries: dict[str, dict[str, str]] = {}
    for logical_id in functions:
        bootstrap = build_dir / logical_id / "bootstrap"
        if not bootstrap.is_file():
            raise ReleaseError(f"{bootstrap} is missing: the build did not finish; run `make sam-build` again")
        machine = elf_machine(bootstrap)
        if machine != arch.elf_name:
            raise ReleaseError(
                f"{bootstrap} is {machine}, not {arch.elf_name} ({arch.name}): the build did not produce "
                f"{arch.name} binaries; nothing was recorded. Run `make sam-build ARCH={arch.name}` again"
            )
        binaries[logical_id] = {"bootstrap": f"{logical_id}/bootstrap", "elf_machine": machine, "sha256": sha256(bootstrap)}
    narrow_architecture(template_path, arch)
    record = {
        "architecture": arch.name,
        "rust_target": arch.rust_target,
        "reason": reason,
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "template_sha256": sha256(template_path),
        "functions": binaries,
    }
    path = record_path(build_dir)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)
    return record


def read_record(build_dir: Path) -> dict[str, Any]:
    """The record of the build in `build_dir`, checked against the files it describes."""
    path = record_path(build_dir)
    if not path.is_file():
        raise ReleaseError(
            f"no recorded build to deploy: {path} does not exist. Run `make sam-build` first "
            f"(it records the architecture it built, and `make sam-deploy` passes that one)"
        )
    record = json.loads(path.read_text())
    architecture(record.get("architecture", ""), f"{path}: architecture")
    files = {"template.yaml": record["template_sha256"]}
    files.update({f["bootstrap"]: f["sha256"] for f in record["functions"].values()})
    for name, digest in files.items():
        file = build_dir / name
        if not file.is_file() or sha256(file) != digest:
            raise ReleaseError(
                f"{file} changed after `make sam-build` recorded the build (replaced or edited by hand?): "
                f"run `make sam-build` again"
            )
    return record


# --- the deploy command ----------------------------------------------------------------------


def parse_overrides(value: Any, source: str) -> dict[str, str]:
    """Parameter overrides in any form sam accepts ("K=V K2='v 2'", a list, ParameterKey=...)."""
    import click
    from samcli.cli.types import CfnParameterOverridesType

    try:
        return dict(CfnParameterOverridesType().convert(value, None, None))
    except click.BadParameter as e:
        raise ReleaseError(f"{source}: {e.message}") from None


def saved_overrides(config_file: Path) -> dict[str, str]:
    """parameter_overrides saved in samconfig.toml (a guided deploy writes them there)."""
    if not config_file.is_file():
        return {}
    config = tomllib.loads(config_file.read_text())
    for command in ("deploy", "global"):
        value = config.get("default", {}).get(command, {}).get("parameters", {}).get("parameter_overrides")
        if value:
            return parse_overrides(value, f"{config_file} [default.{command}.parameters] parameter_overrides")
    return {}


def check_against_template(parameters: dict[str, str], declared: dict[str, Any], source: dict[str, str]) -> None:
    """Refuses a parameter the template does not declare or whose value it would not accept."""
    for key, value in parameters.items():
        if key not in declared:
            raise ReleaseError(
                f"{source[key]} sets {key}, which template.yaml does not declare (sam would ignore it): "
                f"its parameters are {', '.join(declared)}"
            )
        allowed = declared[key].get("AllowedValues")
        if allowed and value not in [str(a) for a in allowed]:
            raise ReleaseError(f"{source[key]} sets {key}={value}: template.yaml allows {', '.join(map(str, allowed))}")
        pattern = declared[key].get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            raise ReleaseError(f"{source[key]} sets {key}={value!r}, which does not match {pattern}")


def quoted(key: str, value: str) -> str:
    """One override as sam reads it back: values with spaces or quotes in double quotes."""
    if re.fullmatch(r"[^\s\"'\\]+", value):
        return f"{key}={value}"
    return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def other_architecture(asked: str, setting: str, record: dict[str, Any], build_dir: Path) -> ReleaseError:
    """The refusal of a deploy asked for another Architecture than the build's."""
    built = record["architecture"]
    return ReleaseError(
        f"{setting} asks for Architecture={asked}, but the build in {build_dir} is {built} "
        f"(commit {record['git_commit'][:12]}, built {record['built_at']}). Run `make sam-build ARCH={asked}` "
        f"to build {asked}, or deploy the {built} build without asking for an Architecture"
    )


def deploy_parameters(
    record: dict[str, Any], build_dir: Path, asked_arch: str, secret_arn: str, params: str, config_file: Path,
    guided: bool,
) -> dict[str, str]:
    """Every override to pass: samconfig.toml's, then PARAMS, then SECRET_ARN, and the build's Architecture."""
    built = record["architecture"]
    if asked_arch and architecture(asked_arch, "ARCH").name != built:
        raise other_architecture(asked_arch, f"ARCH={asked_arch}", record, build_dir)
    given = parse_overrides(params, "PARAMS")
    if given.get("Architecture", built) != built:
        raise other_architecture(given["Architecture"], "PARAMS", record, build_dir)
    if secret_arn and given.get("SnowflakeSecretArn", secret_arn) != secret_arn:
        raise ReleaseError("SECRET_ARN and PARAMS' SnowflakeSecretArn differ: give the secret's ARN once")
    saved = saved_overrides(config_file)
    if saved.get("Architecture", built) != built:
        print(f"==> {config_file} saved Architecture={saved['Architecture']}; passing {built}, the build's", flush=True)
    source = {"Architecture": str(record_path(build_dir))}
    source |= {key: f"{config_file} parameter_overrides" for key in saved if key not in source}
    source |= {key: "PARAMS" for key in given if key != "Architecture"}
    rest = {key: value for key, value in (saved | given).items() if key != "Architecture"}
    if secret_arn:
        rest["SnowflakeSecretArn"], source["SnowflakeSecretArn"] = secret_arn, "SECRET_ARN"
    secret = {"SnowflakeSecretArn": rest.pop("SnowflakeSecretArn")} if "SnowflakeSecretArn" in rest else {}
    merged = {"Architecture": built} | secret | rest
    declared = load_template(build_dir / "template.yaml").get("Parameters", {})
    check_against_template(merged, declared, source)
    if "SnowflakeSecretArn" not in merged and not guided:
        raise ReleaseError(
            "no SnowflakeSecretArn: run `make sam-deploy SECRET_ARN=arn:aws:secretsmanager:...` "
            "(or `make sam-deploy GUIDED=1`, which asks for it and saves it in samconfig.toml)"
        )
    return merged


def deploy(args: argparse.Namespace) -> int:
    """`sam deploy` of the recorded build (or, with --dry-run, its command line)."""
    build_dir = Path(args.build_dir)
    config_file = Path(args.config_file).absolute()
    guided = truthy(args.guided, "GUIDED")
    dry_run = truthy(args.dry_run, "DRY_RUN")
    record = read_record(build_dir)
    parameters = deploy_parameters(
        record, build_dir, args.architecture, args.secret_arn, args.params, config_file, guided
    )
    template_file = build_dir / "template.yaml"
    command = [
        str(SAM), "deploy", "--template-file", str(template_file), "--config-file", str(config_file),
        "--parameter-overrides", *(quoted(key, value) for key, value in parameters.items()),
    ] + (["--guided"] if guided else [])
    head = git("rev-parse", "HEAD")
    print(
        f"==> Deploying the {record['architecture']} build of {record['git_commit'][:12]}"
        f"{' (with uncommitted changes)' if record['git_dirty'] else ''}, built {record['built_at']}",
        flush=True,
    )
    if head and head != record["git_commit"]:
        print(f"==> note: HEAD is now {head[:12]}; run `make sam-build` to deploy it", flush=True)
    if guided:
        print(f"==> The built template allows only Architecture={record['architecture']}: keep it at the prompt", flush=True)
    if dry_run:
        print("==> DRY_RUN: not running", flush=True)
        print(shlex.join(command), flush=True)
        return 0
    print(f"==> {shlex.join(command)}", flush=True)
    return subprocess.run(command, check=False).returncode


def build(args: argparse.Namespace) -> int:
    """Chooses the architecture, runs `sam build` for it and records the build."""
    build_dir = Path(args.build_dir)
    arch, reason = choose_architecture(args.architecture)
    print(f"==> Building {arch.name} ({arch.rust_target}): {reason}", flush=True)
    record_path(build_dir).unlink(missing_ok=True)
    command = [
        str(SAM), "build", "--beta-features", "--build-dir", str(build_dir),
        "--parameter-overrides", f"Architecture={arch.name}", f"SnowflakeSecretArn={BUILD_ONLY_SECRET}",
    ]
    print(f"==> {shlex.join(command)}", flush=True)
    status = subprocess.run(command, cwd=REPO, check=False).returncode
    if status != 0:
        print(f"error: sam build failed (exit status {status}); no build was recorded", file=sys.stderr)
        return status
    record = write_record(build_dir, arch.name, reason)
    print(f"==> Built {arch.name}: " + ", ".join(f"{k} {v['elf_machine']}" for k, v in record["functions"].items()))
    print(f"==> Recorded in {record_path(build_dir)}; `make sam-deploy SECRET_ARN=...` deploys it as {arch.name}")
    if arch.name != DEFAULT_ARCHITECTURE and not args.architecture:
        print(f"==> {reason}")
    return 0


def record(args: argparse.Namespace) -> int:
    """Records an existing build (what `build` does after sam build); prints the record."""
    written = write_record(Path(args.build_dir), args.architecture, args.reason)
    print(json.dumps(written, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run in (("build", build), ("record", record), ("deploy", deploy)):
        command = commands.add_parser(name)
        command.set_defaults(run=run)
        command.add_argument("--build-dir", default=".aws-sam/build")
        command.add_argument("--architecture", default="", required=name == "record")
        if name == "record":
            command.add_argument("--reason", default="recorded by hand")
        if name == "deploy":
            command.add_argument("--config-file", default="samconfig.toml")
            command.add_argument("--secret-arn", default="")
            command.add_argument("--params", default="")
            command.add_argument("--guided", default="")
            command.add_argument("--dry-run", default="")
    args = parser.parse_args()
    try:
        return args.run(args)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
