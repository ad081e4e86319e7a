"""The SQL API authenticates key-pair JWTs and PATs the way Snowflake does."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from sflocal import USER_AGENT, Control, Http, Identity, SqlApi, bearer, fingerprint, new_key, public_pem

DATABASE, SCHEMA = "TRACKLAYER", "EVENTS"


def select_one(http: Http, headers: dict[str, str]):
    return SqlApi(http, headers, DATABASE, SCHEMA).submit("SELECT 1")


def assert_jwt_rejected(reply, reason: str) -> None:
    assert reply.status == 401, reply.body
    assert reply.body["code"] == "390144"
    assert reply.body["sqlState"] == "08001"
    assert reply.body["message"].startswith(f"JWT token is invalid. [{reason}]"), reply.body["message"]


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


def test_signature_by_another_key_with_the_registered_fingerprint_is_invalid_signature(
    http: Http, user: Identity
) -> None:
    token = user.token(signing_key=new_key(), fingerprint_of=user.key)
    assert_jwt_rejected(select_one(http, user.headers(token)), "394306 INVALID_SIGNATURE")


def test_fingerprint_of_an_unregistered_key_is_fingerprint_mismatch(http: Http, user: Identity) -> None:
    other = new_key()
    token = user.token(signing_key=other, fingerprint_of=other)
    assert_jwt_rejected(select_one(http, user.headers(token)), "394304 FINGERPRINT_MISMATCH")


def test_wrong_fingerprint_claim_is_fingerprint_mismatch(http: Http, user: Identity) -> None:
    token = user.token(iss=f"{user.account}.{user.user}.SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert_jwt_rejected(select_one(http, user.headers(token)), "394304 FINGERPRINT_MISMATCH")


def test_expired_token(http: Http, user: Identity) -> None:
    token = user.token(issued_at=int(time.time()) - 600, lifetime=300)
    assert_jwt_rejected(select_one(http, user.headers(token)), "394303 EXPIRED")


def test_lifetime_over_one_hour_is_invalid_times(http: Http, user: Identity) -> None:
    token = user.token(lifetime=3601)
    assert_jwt_rejected(select_one(http, user.headers(token)), "394301 INVALID_TIMES")


def test_lifetime_of_exactly_one_hour_is_accepted(http: Http, user: Identity) -> None:
    assert select_one(http, user.headers(user.token(lifetime=3600))).status == 200


def test_missing_exp_is_invalid_times(http: Http, user: Identity) -> None:
    assert_jwt_rejected(select_one(http, user.headers(user.token(drop=("exp",)))), "394301 INVALID_TIMES")


def test_issued_in_the_future_is_invalid_issue_time(http: Http, user: Identity) -> None:
    token = user.token(issued_at=int(time.time()) + 300)
    assert_jwt_rejected(select_one(http, user.headers(token)), "394302 INVALID_ISSUE_TIME")


def test_wrong_sub_is_account_or_user_mismatch(http: Http, user: Identity) -> None:
    token = user.token(sub=f"{user.account}.SOMEONE_ELSE")
    assert_jwt_rejected(select_one(http, user.headers(token)), "394307 ACCOUNT_OR_USER_MISMATCH")


def test_unregistered_user_is_account_or_user_mismatch(http: Http) -> None:
    stranger = Identity("PYTEST", "NOBODY")
    assert_jwt_rejected(select_one(http, stranger.headers()), "394307 ACCOUNT_OR_USER_MISMATCH")


def test_malformed_issuer_is_invalid_issuer(http: Http, user: Identity) -> None:
    token = user.token(iss=f"{user.account}.{user.user}")
    assert_jwt_rejected(select_one(http, user.headers(token)), "394300 INVALID_ISSUER")


def test_lower_case_issuer_is_invalid_issuer(http: Http, user: Identity) -> None:
    token = user.token(iss=f"{user.account.lower()}.{user.user.lower()}.{fingerprint(user.key)}")
    assert_jwt_rejected(select_one(http, user.headers(token)), "394300 INVALID_ISSUER")


def test_hs256_is_unsupported_algorithm(http: Http, user: Identity) -> None:
    now = int(time.time())
    claims = {
        "iss": f"{user.account}.{user.user}.{fingerprint(user.key)}",
        "sub": f"{user.account}.{user.user}",
        "iat": now,
        "exp": now + 600,
    }
    token = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256")
    assert_jwt_rejected(select_one(http, user.headers(token)), "394305 UNSUPPORTED_ALGORITHM")
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_jwt_rejected(select_one(http, user.headers(unsigned)), "394305 UNSUPPORTED_ALGORITHM")


def test_garbage_token_is_invalid_signature(http: Http) -> None:
    assert_jwt_rejected(select_one(http, bearer("not-a-jwt", "KEYPAIR_JWT")), "394306 INVALID_SIGNATURE")


def test_key_rotation_with_rsa_public_key_2(http: Http, control: Control, user: Identity) -> None:
    old_key, new = user.key, new_key()
    with_new = Identity(user.account, user.user, new)
    assert_jwt_rejected(select_one(http, with_new.headers()), "394304 FINGERPRINT_MISMATCH")

    control.register(user, rsa_public_key_2=public_pem(new))
    assert select_one(http, user.headers()).status == 200
    assert select_one(http, with_new.headers()).status == 200

    control.register(with_new)  # the old key is retired
    retired = Identity(user.account, user.user, old_key)
    assert_jwt_rejected(select_one(http, retired.headers()), "394304 FINGERPRINT_MISMATCH")
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
