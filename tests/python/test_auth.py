"""The SQL API authenticates key-pair JWTs and PATs the way Snowflake does."""

from __future__ import annotations

import json
import re
import time
import uuid

import jwt
import pytest

from sflocal import USER_AGENT, Control, Http, Identity, Reply, SqlApi, bearer, fingerprint, new_key, public_pem

DATABASE, SCHEMA = "TRACKLAYER", "EVENTS"
FINGERPRINT_MISMATCH = "JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH"


def select_one(http: Http, headers: dict[str, str]) -> Reply:
    return SqlApi(http, headers, DATABASE, SCHEMA).submit("SELECT 1")


JWT_INVALID = re.compile(r"JWT token is invalid\. \[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]")


def assert_jwt_rejected(reply: Reply, reason: str, http: Http, admin: Identity) -> dict:
    """390144 with only the UUID in the message; the reason is what an administrator reads for it."""
    assert reply.status == 401, reply.body
    assert set(reply.body) == {"code", "sqlState", "message"}, reply.body
    assert (reply.body["code"], reply.body["sqlState"]) == ("390144", "08001")
    match = JWT_INVALID.fullmatch(reply.body["message"])
    assert match, reply.body["message"]
    api = SqlApi(http, admin.headers(), DATABASE, SCHEMA)
    details = api.rows(f"SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS('{match[1]}')")[0][0]
    failure = json.loads(details)
    assert set(failure) == {"clientIP", "clientType", "clientVersion", "username", "errorCode", "timestamp"}
    assert failure["errorCode"] == reason
    assert abs(failure["timestamp"] - time.time()) < 60
    extracted = api.rows(f"SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{match[1]}'), 'errorCode')")
    assert extracted == [[reason]]
    return failure


@pytest.fixture
def user(control: Control) -> Identity:
    identity = Identity("PYTEST", f"AUTH_{uuid.uuid4().hex[:8].upper()}")
    control.register(identity)
    return identity


def test_valid_jwt_runs_select_1(http: Http, user: Identity) -> None:
    reply = select_one(http, user.headers())
    assert reply.status == 200, reply.body
    assert reply.body["data"] == [["1"]]
    assert reply.body["code"] == "090001"


def test_signature_by_another_key_with_the_registered_fingerprint_is_jwt_token_invalid(
    http: Http, user: Identity, loader: Identity
) -> None:
    token = user.token(signing_key=new_key(), fingerprint_of=user.key)
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID", http, loader)


def test_fingerprint_of_an_unregistered_key_is_fingerprint_mismatch(
    http: Http, user: Identity, loader: Identity
) -> None:
    other = new_key()
    token = user.token(signing_key=other, fingerprint_of=other)
    assert_jwt_rejected(select_one(http, user.headers(token)), FINGERPRINT_MISMATCH, http, loader)


def test_wrong_fingerprint_claim_is_fingerprint_mismatch(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(iss=f"{user.account}.{user.user}.SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert_jwt_rejected(select_one(http, user.headers(token)), FINGERPRINT_MISMATCH, http, loader)


def test_expired_token(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(issued_at=int(time.time()) - 600, lifetime=300)
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_EXPIRED", http, loader)


def test_lifetime_over_one_hour_is_invalid_expiration_time(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(lifetime=3601)
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID_EXPIRATION_TIME", http, loader)


def test_lifetime_of_exactly_one_hour_is_accepted(http: Http, user: Identity) -> None:
    assert select_one(http, user.headers(user.token(lifetime=3600))).status == 200


def test_missing_exp_is_invalid_expiration_time(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(drop=("exp",))
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID_EXPIRATION_TIME", http, loader)


def test_issued_in_the_future_is_not_yet_valid(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(issued_at=int(time.time()) + 300)
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_NOT_YET_VALID", http, loader)


def test_wrong_sub_is_jwt_token_invalid(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(sub=f"{user.account}.SOMEONE_ELSE")
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID", http, loader)


def test_unregistered_user_is_jwt_token_invalid(http: Http, loader: Identity) -> None:
    stranger = Identity("PYTEST", "NOBODY")
    assert_jwt_rejected(select_one(http, stranger.headers()), "JWT_TOKEN_INVALID", http, loader)


def test_malformed_issuer_is_jwt_token_invalid(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(iss=f"{user.account}.{user.user}")
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID", http, loader)


def test_lower_case_issuer_is_jwt_token_invalid(http: Http, user: Identity, loader: Identity) -> None:
    token = user.token(iss=f"{user.account.lower()}.{user.user.lower()}.{fingerprint(user.key)}")
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID", http, loader)


def test_hs256_and_none_are_invalid_algorithm(http: Http, user: Identity, loader: Identity) -> None:
    now = int(time.time())
    claims = {
        "iss": f"{user.account}.{user.user}.{fingerprint(user.key)}",
        "sub": f"{user.account}.{user.user}",
        "iat": now,
        "exp": now + 600,
    }
    token = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256")
    assert_jwt_rejected(select_one(http, user.headers(token)), "JWT_TOKEN_INVALID_ALGORITHM", http, loader)
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_jwt_rejected(select_one(http, user.headers(unsigned)), "JWT_TOKEN_INVALID_ALGORITHM", http, loader)


def test_garbage_token_is_invalid_format(http: Http, loader: Identity) -> None:
    assert_jwt_rejected(select_one(http, bearer("not-a-jwt", "KEYPAIR_JWT")), "JWT_TOKEN_INVALID_FORMAT", http, loader)


def test_key_rotation_with_rsa_public_key_2(http: Http, control: Control, user: Identity, loader: Identity) -> None:
    old_key, new = user.key, new_key()
    with_new = Identity(user.account, user.user, new)
    assert_jwt_rejected(select_one(http, with_new.headers()), FINGERPRINT_MISMATCH, http, loader)

    control.register(user, rsa_public_key_2=public_pem(new))
    assert select_one(http, user.headers()).status == 200
    assert select_one(http, with_new.headers()).status == 200

    control.register(with_new)  # the old key is retired
    retired = Identity(user.account, user.user, old_key)
    assert_jwt_rejected(select_one(http, retired.headers()), FINGERPRINT_MISMATCH, http, loader)
    assert select_one(http, with_new.headers()).status == 200


def test_programmatic_access_tokens(http: Http, control: Control) -> None:
    suffix = uuid.uuid4().hex
    identity = Identity("PYTEST", "PAT_USER")
    control.register(
        identity,
        pats=[
            {"token": f"valid-{suffix}"},
            {"token": f"future-{suffix}", "expires_at": "2099-01-01T00:00:00Z"},
            {"token": f"expired-{suffix}", "expires_at": int(time.time()) - 10},
            {"token": f"revoked-{suffix}", "revoked": True},
        ],
    )
    for good in (f"valid-{suffix}", f"future-{suffix}"):
        reply = select_one(http, bearer(good, "PROGRAMMATIC_ACCESS_TOKEN"))
        assert reply.status == 200, reply.body
    for bad in (f"expired-{suffix}", f"revoked-{suffix}", f"unknown-{suffix}"):
        reply = select_one(http, bearer(bad, "PROGRAMMATIC_ACCESS_TOKEN"))
        assert reply.status == 401
        assert reply.body == {
            "code": "394400",
            "sqlState": "08004",
            "message": "Programmatic access token is invalid.",
        }


def test_a_jwt_sent_as_pat_is_rejected(http: Http, user: Identity) -> None:
    reply = select_one(http, bearer(user.token(), "PROGRAMMATIC_ACCESS_TOKEN"))
    assert (reply.status, reply.body["code"]) == (401, "394400")


@pytest.mark.parametrize("token_type", [None, "OAUTH", "keypair_jwt"])
def test_missing_or_unsupported_token_type_is_390101(http: Http, user: Identity, token_type: str | None) -> None:
    reply = select_one(http, bearer(user.token(), token_type))
    assert (reply.status, reply.body["code"], reply.body["sqlState"]) == (401, "390101", "08001")


def test_missing_authorization_header_is_390101(http: Http) -> None:
    headers = {"User-Agent": USER_AGENT, "X-Snowflake-Authorization-Token-Type": "KEYPAIR_JWT"}
    reply = select_one(http, headers)
    assert (reply.status, reply.body["code"]) == (401, "390101")


def test_missing_user_agent_is_400(http: Http, user: Identity) -> None:
    headers = user.headers()
    del headers["User-Agent"]
    reply = select_one(http, headers)
    assert (reply.status, reply.body["code"]) == (400, "390142")


def test_polling_and_cancelling_need_authentication(http: Http, user: Identity) -> None:
    handle = select_one(http, user.headers()).body["statementHandle"]
    api = SqlApi(http, user.headers(), DATABASE, SCHEMA)
    assert api.poll(handle).status == 200
    stranger = Identity("PYTEST", "NOBODY")
    assert api.poll(handle, headers=stranger.headers()).status == 401
    cancel = http.request("POST", f"/api/v2/statements/{handle}/cancel", headers=stranger.headers())
    assert (cancel.status, cancel.body["code"]) == (401, "390144")


def test_login_failure_details_name_the_user_and_an_unknown_uuid_has_none(
    http: Http, user: Identity, loader: Identity
) -> None:
    other = new_key()
    token = user.token(signing_key=other, fingerprint_of=other)
    first = select_one(http, user.headers(token))
    second = select_one(http, user.headers(token))
    failure = assert_jwt_rejected(first, FINGERPRINT_MISMATCH, http, loader)
    assert (failure["username"], failure["clientType"], failure["clientIP"]) == (user.user, "OTHER", "127.0.0.1")
    assert first.body["message"] != second.body["message"]  # one UUID per refused login
    api = SqlApi(http, loader.headers(), DATABASE, SCHEMA)
    assert api.rows(f"SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS('{uuid.uuid4()}')") == [[None]]


def test_network_policy_refuses_other_addresses_with_390422_and_the_address_seen(
    http: Http, control: Control, user: Identity
) -> None:
    control.register(user, network_policy={"allowed_ip_list": ["203.0.113.0/24"]})
    reply = select_one(http, user.headers())
    assert reply.status == 401, reply.body
    assert reply.body == {
        "code": "390422",
        "sqlState": "08004",
        "message": "Incoming request with IP/Token 127.0.0.1 is not allowed to access Snowflake. "
        "Contact your account administrator.",
    }
    control.register(user, network_policy={"allowed_ip_list": ["127.0.0.0/8"]})
    assert select_one(http, user.headers()).status == 200
    control.register(user, network_policy={"allowed_ip_list": ["127.0.0.0/8"], "blocked_ip_list": ["127.0.0.1"]})
    assert select_one(http, user.headers()).body["code"] == "390422"
    control.register(user)
    assert select_one(http, user.headers()).status == 200


def test_network_policy_entries_must_be_ipv4(control: Control, user: Identity) -> None:
    with pytest.raises(AssertionError, match="is not IPv4"):
        control.register(user, network_policy={"allowed_ip_list": ["2001:db8::/32"]})
