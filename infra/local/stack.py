"""Start, stop and inspect the local test stack: moto (SQS, Secrets Manager) and the local Snowflake.

    .venv/bin/python -m tracklayer_local.stack up | down | status

Run from the repository root. Environment: MOTO_PORT (4566), SNOWFLAKE_PORT (8085), STACK_DIR
(.local), TRACKLAYER_MAX_RECEIVE_COUNT (5, the queues' redrive maxReceiveCount).

``up`` (re)starts both servers in the background (pid files and logs in STACK_DIR), creates the
queues and their dead-letter queues, makes an RSA key pair in STACK_DIR/keys (kept across runs),
stores the Snowflake secret in Secrets Manager, registers the public key with the local
Snowflake (user TRACKLAYER_SVC, role TRACKLAYER_WRITER granted and its default) and writes
STACK_DIR/stack.env. ``down`` stops both servers. ``status`` shows what runs
and exits 1 unless both answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EMULATOR_MODULE = "tracklayer_local.emulator"
MOTO_MODULE = "tracklayer_local.moto_patches"
PYTHON = Path(sys.executable).absolute()  # the venv's python, symlink kept

REGION = "us-east-1"
SECRET_ID = "tracklayer/snowflake"
ACCOUNT, USER = "LOCALTEST", "TRACKLAYER_SVC"
QUEUES = {"EVENTS": "tracklayer-events", "STAGING": "tracklayer-staging"}
VISIBILITY_TIMEOUT_S = 60
DLQ_RETENTION_S = 14 * 24 * 3600
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


class StackError(Exception):
    """A failure to report as one clear line (plus a log tail) and exit 1."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    health_path: str
    markers: tuple[str, ...]  # one is in the process's command line, checked before signalling a pid
    stack_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.stack_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.stack_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        if self.name == "moto":
            # moto with the patches that make each SQS call atomic, as SQS's are (moto_patches.py)
            return [str(PYTHON), "-m", MOTO_MODULE, "--port", str(self.port)]
        return [str(PYTHON), "-m", EMULATOR_MODULE, "--host", "127.0.0.1", "--port", str(self.port)]

    def pid(self) -> int | None:
        """The recorded pid if that process is alive and is this service."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        return pid if any(marker in cmdline for marker in self.markers) else None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2) as response:
                return response.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> None:
        if port_in_use(self.port):
            raise StackError(f"{self.name}: port {self.port} is in use by a process this stack did not start")
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self.command(),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `down` stops it and its children
            )
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.answers():
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(f"{self.name} exited with status {process.returncode}; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(f"{self.name} did not answer within {START_TIMEOUT_S}s; log tail:\n{self.log_tail()}")
            time.sleep(0.2)
        print(f"{self.name}: running (pid {process.pid}) at {self.url}, log {self.log_file}")

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                signal_group(pid, signal.SIGKILL)
            print(f"{self.name}: stopped (pid {pid})")
        self.pid_file.unlink(missing_ok=True)


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def services(stack_dir: Path, moto_port: int | None = None, snowflake_port: int | None = None) -> list[Service]:
    """moto and the local Snowflake, on the given ports or those of MOTO_PORT / SNOWFLAKE_PORT."""
    if moto_port is None:
        moto_port = int(os.environ.get("MOTO_PORT", "4566"))
    if snowflake_port is None:
        snowflake_port = int(os.environ.get("SNOWFLAKE_PORT", "8085"))
    return [
        # also the unpatched server an earlier stack.py started, so such a stack still stops
        Service("moto", moto_port, "/moto-api/", (MOTO_MODULE, "moto_server"), stack_dir),
        Service(
            "snowflake",
            snowflake_port,
            "/__emulator/health",
            # also the emulator's earlier entry point, so a stack started before the move still stops
            (EMULATOR_MODULE, "infra/local/snowflake_emulator.py", "tracklayer_local.snowflake_emulator"),
            stack_dir,
        ),
    ]


# --------------------------------------------------------------------------------------------
# Provisioning
# --------------------------------------------------------------------------------------------


def aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def create_queues(endpoint: str) -> dict[str, str]:
    """Each queue with its DLQ; returns env name -> queue URL."""
    sqs = aws_client("sqs", endpoint)
    max_receive_count = int(os.environ.get("TRACKLAYER_MAX_RECEIVE_COUNT", "5"))
    urls = {}
    for key, name in QUEUES.items():
        dlq_url = sqs.create_queue(
            QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        url = sqs.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S), "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        urls[f"TRACKLAYER_{key}_QUEUE_URL"] = url
        urls[f"TRACKLAYER_{key}_DLQ_URL"] = dlq_url
        print(f"sqs: {name} (dlq {name}-dlq, maxReceiveCount {max_receive_count})")
    return urls


def ensure_key_pair(keys_dir: Path) -> tuple[Path, str]:
    """RSA 2048 key pair: rsa_key.p8 (PKCS#8 PEM, unencrypted) and rsa_key.pub (SPKI PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_path, public_path = keys_dir / "rsa_key.p8", keys_dir / "rsa_key.pub"
    if private_path.exists() and public_path.exists():
        print(f"keys: reusing {private_path}")
        return private_path, public_path.read_text()
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.write_bytes(private_pem)
    private_path.chmod(0o600)
    public_path.write_bytes(public_pem)
    print(f"keys: generated {private_path}")
    return private_path, public_pem.decode()


def store_secret(endpoint: str, private_key_pem: str, snowflake_url: str) -> None:
    secrets = aws_client("secretsmanager", endpoint)
    value = json.dumps(
        {
            "account": ACCOUNT,
            "user": USER,
            "private_key": private_key_pem,
            "role": "TRACKLAYER_WRITER",
            "warehouse": "TRACKLAYER_WH",
            "database": "TRACKLAYER",
            "schema": "EVENTS",
            "host": snowflake_url,
        }
    )
    try:
        secrets.create_secret(Name=SECRET_ID, SecretString=value)
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=SECRET_ID, SecretString=value)
    print(f"secretsmanager: {SECRET_ID}")


def register_user(snowflake_url: str, public_key_pem: str) -> None:
    spec = {
        "account": ACCOUNT,
        "user": USER,
        "rsa_public_key": public_key_pem,
        "default_role": "TRACKLAYER_WRITER",
        "default_warehouse": "TRACKLAYER_WH",
        "roles": ["TRACKLAYER_WRITER"],
    }
    request = urllib.request.Request(
        snowflake_url + "/__emulator/users",
        data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        fingerprint = json.load(response)["fingerprints"][0]
    print(f"snowflake: registered {ACCOUNT}.{USER} ({fingerprint})")


def write_env(stack_dir: Path, moto: Service, snowflake: Service, queue_urls: dict[str, str], key: Path) -> Path:
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "TRACKLAYER_SECRET_ID": SECRET_ID,
        **queue_urls,
        "SNOWFLAKE_EMULATOR_URL": snowflake.url,
        "SNOWFLAKE_ACCOUNT": ACCOUNT,
        "SNOWFLAKE_USER": USER,
        "TRACKLAYER_LOCAL_KEY": str(key.absolute()),
        "PYTHON": str(PYTHON),
    }
    path = stack_dir / "stack.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"env: {path}")
    return path


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def up(stack_dir: Path) -> None:
    stack_dir.mkdir(parents=True, exist_ok=True)
    moto, snowflake = services(stack_dir)
    for service in (moto, snowflake):
        service.stop()
    try:
        for service in (moto, snowflake):
            service.start()
    except StackError:
        for service in (moto, snowflake):
            service.stop()
        raise
    queue_urls = create_queues(moto.url)
    key_path, public_pem = ensure_key_pair(stack_dir / "keys")
    store_secret(moto.url, key_path.read_text(), snowflake.url)
    register_user(snowflake.url, public_pem)
    write_env(stack_dir, moto, snowflake, queue_urls, key_path)
    print("stack: up")


def down(stack_dir: Path) -> None:
    for service in services(stack_dir):
        if service.pid() is None:
            print(f"{service.name}: not running")
        service.stop()
    print("stack: down")


def status(stack_dir: Path) -> bool:
    healthy = True
    for service in services(stack_dir):
        pid, answers = service.pid(), service.answers()
        if pid and answers:
            state = f"running (pid {pid}) at {service.url}"
        elif pid:
            state = f"started (pid {pid}) but not answering at {service.url}; see {service.log_file}"
        elif answers:
            state = f"something not started by this stack answers at {service.url}"
        else:
            state = "stopped"
        healthy = healthy and bool(pid and answers)
        print(f"{service.name}: {state}")
    return healthy


def main() -> int:
    commands = ("up", "down", "status")
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(f"usage: {sys.argv[0]} {'|'.join(commands)}", file=sys.stderr)
        return 2
    stack_dir = Path(os.environ.get("STACK_DIR", ".local"))
    try:
        if sys.argv[1] == "up":
            up(stack_dir)
        elif sys.argv[1] == "down":
            down(stack_dir)
        else:
            return 0 if status(stack_dir) else 1
    except StackError as e:
        print(f"stack: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
