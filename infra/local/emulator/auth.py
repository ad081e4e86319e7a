"""Users and how the SQL API authenticates them: key-pair JWTs and programmatic access tokens.

Rule 3 (rule numbers as in the package docstring)
--------------------------------------------------
A rejected key-pair JWT answers 401 ``390144`` 08001 with the message
   ``JWT token is invalid. [<uuid>]`` and nothing else: "Each JWT token is invalid error includes
   a UUID that appears in brackets" (https://docs.snowflake.com/user-guide/
   key-pair-auth-troubleshooting). The reason is kept per UUID and answered by
   ``SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>')`` as the documented JSON object
   ``{"clientIP", "clientType": "OTHER", "clientVersion": null, "username", "errorCode",
   "timestamp"}`` (https://docs.snowflake.com/sql-reference/functions/
   system_get_login_failure_details), and by
   ``SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>'), '<key>')``; an
   unknown UUID gives NULL (UNCONFIRMED). ``errorCode`` is the reason's name as the official
   connector names the codes (snowflake-connector-python network.py
   CREDENTIAL_REJECTION_GS_CODES); the checks, in order:
   394306 JWT_TOKEN_INVALID_FORMAT (not a decodable JWT); 394305 JWT_TOKEN_INVALID_ALGORITHM
   (alg not RS256: none, HS256, ...); 394300 JWT_TOKEN_INVALID (iss not
   ``ACCOUNT.USER.SHA256:<base64>`` with upper-case ACCOUNT and USER, sub != ACCOUNT.USER of iss,
   no such registered user, or a signature that does not verify with the key the fingerprint
   names); 394304 JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH (the fingerprint is not one
   of the user's keys, rsa_public_key or rsa_public_key_2); 394303
   JWT_TOKEN_INVALID_EXPIRATION_TIME (iat or exp missing / not numbers, or exp - iat > 3600 s);
   394302 JWT_TOKEN_NOT_YET_VALID (iat more than 60 s in the future); 394301 JWT_TOKEN_EXPIRED
   (exp <= now). Which of these Snowflake reports for a bad signature or an unknown user, and
   whether errorCode also carries the number, is UNCONFIRMED. Only administrators with MONITOR
   may call the function in Snowflake; the emulator lets any user. (Snowflake's 2026_07 bundle,
   BCR-2421, pending, changes what an expired JWT answers on some REST endpoints to
   390318 "OAuth access token expired"; not modelled.)

Rule 8: a user's network policy
-------------------------------
A user registered with ``network_policy`` refuses requests from addresses it does not allow, as
Snowflake does once ``ALTER USER ... SET NETWORK_POLICY`` is set: with an allowed list, only
those addresses may connect, and "the blocked list controls which requests should be
explicitly blocked" (https://docs.snowflake.com/user-guide/network-policies); an address in
both is refused (the blocked list is applied first; that precedence is from third-party guides,
UNCONFIRMED on Snowflake's page). Entries are IPv4 addresses or CIDR
ranges (network rules of ``TYPE = IPV4``; there is no IPv6 type, same page), so an IPv6 client
is refused by any allowed list. The answer is 390422 08004 with the address Snowflake saw,
``Incoming request with IP/Token <address> is not allowed to access Snowflake. Contact your
account administrator.``: the wording and the code as Snowflake's drivers report it
(Terraform's gosnowflake: "390422 (08004): Incoming request with IP/Token 102.203.137.234 is
not allowed to access Snowflake."; Posit's Snowflake networking guide,
https://docs.posit.co/partnerships/snowflake/posit-team/networking/network-policies.html). Older
answers read ``IP <address> is not allowed to access Snowflake. Contact your local security
administrator ...`` (airbytehq/airbyte#20992). UNCONFIRMED: the HTTP status the SQL API sends
it with (401 here, like the other login refusals), and whether Snowflake checks the policy
before or after the credentials (here after: the user must be known to find its policy). The
address is the TCP peer of the request (127.0.0.1 on the local stack). Only the SQL API checks
it; the Snowpipe Streaming endpoints do not.

Control endpoint
----------------
* ``POST /__emulator/users`` ``{"account", "user", "rsa_public_key": PEM, "rsa_public_key_2"?: PEM,
  "pats"?: [{"token", "expires_at"?: epoch seconds or ISO 8601, "revoked"?: bool}],
  "default_role"?: "PUBLIC", "default_warehouse"?: "TRACKLAYER_WH" (null: none), "roles"?:
  ["ROLE", ...], "network_policy"?: {"allowed_ip_list"?: ["203.0.113.0/24", ...],
  "blocked_ip_list"?: [...]}}`` registers or replaces the user (ACCOUNT and USER are upper-cased) and answers
  its key fingerprints and ``roles``, the roles granted to it: those listed, its default role and
  PUBLIC (exact names, as SHOW ROLES shows them). ``GET`` answers a JSON array of the users.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from tracklayer_local.emulator.errors import ApiError, unauthorized

JWT_MAX_LIFETIME_S = 3600
JWT_MAX_FUTURE_IAT_S = 60
log = logging.getLogger("snowflake_emulator")


# Reason codes and names of rejected key-pair JWTs, as the official connector names them
# (snowflake-connector-python src/snowflake/connector/network.py, CREDENTIAL_REJECTION_GS_CODES).
JWT_TOKEN_INVALID = ("394300", "JWT_TOKEN_INVALID")
JWT_TOKEN_EXPIRED = ("394301", "JWT_TOKEN_EXPIRED")
JWT_TOKEN_NOT_YET_VALID = ("394302", "JWT_TOKEN_NOT_YET_VALID")
JWT_TOKEN_INVALID_EXPIRATION_TIME = ("394303", "JWT_TOKEN_INVALID_EXPIRATION_TIME")
JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH = ("394304", "JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH")
JWT_TOKEN_INVALID_ALGORITHM = ("394305", "JWT_TOKEN_INVALID_ALGORITHM")
JWT_TOKEN_INVALID_FORMAT = ("394306", "JWT_TOKEN_INVALID_FORMAT")

ISSUER_RE = re.compile(r"([^.\s]+)\.([^.\s]+)\.SHA256:([A-Za-z0-9+/]+=*)")
MAX_LOGIN_FAILURES = 2000


class JwtRejected(Exception):
    """Why a key-pair JWT was refused: kept by the emulator, never put in the answer."""

    def __init__(self, reason: tuple[str, str], detail: str, username: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.username = reason, detail, username


@dataclass
class LoginFailure:
    """One refused login, as SYSTEM$GET_LOGIN_FAILURE_DETAILS describes it."""

    client_ip: str | None
    username: str | None
    error_code: str
    reason_code: str
    detail: str
    timestamp: int

    def details_json(self) -> str:
        """The documented JSON (docs.snowflake.com/sql-reference/functions/system_get_login_failure_details)."""
        return json.dumps(
            {
                "clientIP": self.client_ip,
                "clientType": "OTHER",
                "clientVersion": None,
                "username": self.username,
                "errorCode": self.error_code,
                "timestamp": self.timestamp,
            },
            separators=(",", ":"),
        )


class LoginFailures:
    """Refused logins by the UUID their 390144 answer shows (the newest MAX_LOGIN_FAILURES)."""

    def __init__(self) -> None:
        self._by_uuid: OrderedDict[str, LoginFailure] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, rejected: JwtRejected, client_ip: str | None, now: float) -> str:
        failure_id = str(uuid.uuid4())
        code, name = rejected.reason
        failure = LoginFailure(client_ip, rejected.username, name, code, rejected.detail, int(now))
        with self._lock:
            self._by_uuid[failure_id] = failure
            while len(self._by_uuid) > MAX_LOGIN_FAILURES:
                self._by_uuid.popitem(last=False)
        log.warning("JWT token is invalid. [%s]: %s %s: %s", failure_id, code, name, rejected.detail)
        return failure_id

    def get(self, failure_id: str) -> LoginFailure | None:
        with self._lock:
            return self._by_uuid.get(failure_id)


def jwt_invalid(failure_id: str) -> ApiError:
    return ApiError(401, "390144", f"JWT token is invalid. [{failure_id}]", "08001")


def pat_invalid() -> ApiError:
    return ApiError(401, "394400", "Programmatic access token is invalid.", "08004")


def network_policy_refused(address: str) -> ApiError:
    return ApiError(
        401,
        "390422",
        f"Incoming request with IP/Token {address} is not allowed to access Snowflake. "
        "Contact your account administrator.",
        "08004",
    )


@dataclass(frozen=True)
class NetworkPolicy:
    """A user's network policy (rule 8): IPv4 addresses and ranges allowed and blocked."""

    allowed: tuple[ipaddress.IPv4Network, ...]
    blocked: tuple[ipaddress.IPv4Network, ...]

    @classmethod
    def from_spec(cls, spec: Any) -> NetworkPolicy:
        if not isinstance(spec, dict) or set(spec) - {"allowed_ip_list", "blocked_ip_list"}:
            raise ValueError("network_policy is an object with allowed_ip_list and/or blocked_ip_list")

        def networks(field: str) -> tuple[ipaddress.IPv4Network, ...]:
            entries = spec.get(field) or []
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise ValueError(f"network_policy.{field} is a list of IPv4 addresses or CIDR ranges")
            parsed = []
            for entry in entries:
                network = ipaddress.ip_network(entry, strict=False)
                if not isinstance(network, ipaddress.IPv4Network):
                    raise ValueError(f"network_policy.{field}: {entry!r} is not IPv4 (network rules have no IPv6 type)")
                parsed.append(network)
            return tuple(parsed)

        return cls(networks("allowed_ip_list"), networks("blocked_ip_list"))

    def allows(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.blocked if ip.version == 4):
            return False
        return not self.allowed or (ip.version == 4 and any(ip in net for net in self.allowed))

    def describe(self) -> dict[str, list[str]]:
        return {
            "allowed_ip_list": [str(n) for n in self.allowed],
            "blocked_ip_list": [str(n) for n in self.blocked],
        }


def key_fingerprint(key: RSAPublicKey) -> str:
    """Base64 SHA-256 of the DER SubjectPublicKeyInfo, as in RSA_PUBLIC_KEY_FP (without 'SHA256:')."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def load_public_key(pem: Any) -> RSAPublicKey:
    if not isinstance(pem, str):
        raise ValueError("public keys must be PEM strings")
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise ValueError("public keys must be RSA keys")
    return key


def parse_instant(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC); None stays None."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        at = datetime.fromisoformat(value)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"not a time: {value!r}")


@dataclass
class Pat:
    token: str
    expires_at: float | None
    revoked: bool

    def valid(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or self.expires_at > now)


@dataclass
class User:
    account: str
    name: str
    keys: dict[str, RSAPublicKey]  # fingerprint -> key
    pats: list[Pat]
    default_role: str
    default_warehouse: str | None
    roles: frozenset[str] = frozenset()
    network_policy: NetworkPolicy | None = None

    @property
    def granted_roles(self) -> frozenset[str]:
        """The roles the user may name in a request: those granted, its default role and PUBLIC."""
        return self.roles | {self.default_role, "PUBLIC"}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> User:
        account, name = spec.get("account"), spec.get("user")
        if not isinstance(account, str) or not isinstance(name, str) or not account or not name:
            raise ValueError("account and user are required strings")
        keys = [load_public_key(spec[k]) for k in ("rsa_public_key", "rsa_public_key_2") if spec.get(k)]
        pats = [
            Pat(str(p["token"]), parse_instant(p.get("expires_at")), bool(p.get("revoked", False)))
            for p in spec.get("pats") or []
        ]
        roles = spec.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise ValueError("roles must be a list of role names (as SHOW ROLES shows them)")
        return cls(
            account=account.upper(),
            name=name.upper(),
            keys={key_fingerprint(k): k for k in keys},
            pats=pats,
            default_role=spec.get("default_role") or "PUBLIC",
            default_warehouse=spec.get("default_warehouse", "TRACKLAYER_WH"),
            roles=frozenset(roles),
            network_policy=NetworkPolicy.from_spec(spec["network_policy"]) if spec.get("network_policy") else None,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "user": self.name,
            "fingerprints": [f"SHA256:{fp}" for fp in self.keys],
            "pats": len(self.pats),
            "default_role": self.default_role,
            "default_warehouse": self.default_warehouse,
            "roles": sorted(self.granted_roles),
            "network_policy": self.network_policy.describe() if self.network_policy else None,
        }


class Users:
    """Registered users, keyed by (ACCOUNT, USER)."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], User] = {}
        self._lock = threading.Lock()

    def register(self, user: User) -> None:
        with self._lock:
            self._users[(user.account, user.name)] = user

    def get(self, account: str, name: str) -> User | None:
        with self._lock:
            return self._users.get((account, name))

    def by_pat(self, token: str) -> tuple[User, Pat] | None:
        with self._lock:
            for user in self._users.values():
                for pat in user.pats:
                    if pat.token == token:
                        return user, pat
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [u.describe() for u in self._users.values()]


def authenticate(users: Users, failures: LoginFailures, headers: Any, now: float, client_ip: str | None) -> User:
    """The user a request's Authorization headers identify, or an ApiError (401)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Authorization header is missing or is not 'Bearer <token>'.")
    token_type = headers.get("x-snowflake-authorization-token-type")
    if token_type == "KEYPAIR_JWT":
        try:
            user = verify_keypair_jwt(users, token, now)
        except JwtRejected as rejected:
            raise jwt_invalid(failures.record(rejected, client_ip, now)) from None
    elif token_type == "PROGRAMMATIC_ACCESS_TOKEN":
        user = verify_pat(users, token, now)
    else:
        raise unauthorized(
            f"X-Snowflake-Authorization-Token-Type {token_type!r} is missing or not supported here "
            "(use KEYPAIR_JWT or PROGRAMMATIC_ACCESS_TOKEN)."
        )
    if user.network_policy is not None and not user.network_policy.allows(client_ip):
        raise network_policy_refused(client_ip or "unknown")
    return user


def verify_keypair_jwt(users: Users, token: str, now: float) -> User:
    """Check a key-pair JWT the way Snowflake does (see the module docstring for the order)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise JwtRejected(JWT_TOKEN_INVALID_FORMAT, f"Token is not a decodable JWT: {e}") from None
    if header.get("alg") != "RS256":
        raise JwtRejected(JWT_TOKEN_INVALID_ALGORITHM, f"Algorithm {header.get('alg')!r} is not supported; use RS256.")

    issuer = claims.get("iss")
    match = ISSUER_RE.fullmatch(issuer) if isinstance(issuer, str) else None
    if not match or match[1] != match[1].upper() or match[2] != match[2].upper():
        raise JwtRejected(
            JWT_TOKEN_INVALID, f"Issuer {issuer!r} is not ACCOUNT.USER.SHA256:<fingerprint> (upper-case)."
        )
    account, name, fingerprint = match.groups()
    subject = claims.get("sub")
    user = users.get(account, name)
    if subject != f"{account}.{name}" or user is None:
        raise JwtRejected(JWT_TOKEN_INVALID, f"Subject {subject!r} / issuer {account}.{name} is not a registered user.")
    key = user.keys.get(fingerprint)
    if key is None:
        raise JwtRejected(
            JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH,
            f"Fingerprint SHA256:{fingerprint} matches no key of {account}.{name}.",
            user.name,
        )
    try:
        jwt.PyJWS().decode(token, key=key, algorithms=["RS256"])
    except jwt.PyJWTError as e:
        raise JwtRejected(JWT_TOKEN_INVALID, f"Signature verification failed: {e}", user.name) from None

    issued, expires = claims.get("iat"), claims.get("exp")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (issued, expires)):
        raise JwtRejected(JWT_TOKEN_INVALID_EXPIRATION_TIME, "Claims iat and exp are required numbers.", user.name)
    if expires - issued > JWT_MAX_LIFETIME_S:
        raise JwtRejected(
            JWT_TOKEN_INVALID_EXPIRATION_TIME,
            f"Lifetime exp - iat = {expires - issued}s exceeds {JWT_MAX_LIFETIME_S}s.",
            user.name,
        )
    if issued > now + JWT_MAX_FUTURE_IAT_S:
        raise JwtRejected(
            JWT_TOKEN_NOT_YET_VALID, f"iat {issued} is more than {JWT_MAX_FUTURE_IAT_S}s in the future.", user.name
        )
    if expires <= now:
        raise JwtRejected(JWT_TOKEN_EXPIRED, f"Token expired at {expires} (now {int(now)}).", user.name)
    return user


def verify_pat(users: Users, token: str, now: float) -> User:
    found = users.by_pat(token)
    if found is None or not found[1].valid(now):
        raise pat_invalid()
    return found[0]
