//! connection-test against the local stack: the success path, and every known failure yields
//! the right failing check, later checks skipped, and the right fix.

use std::time::Duration;

use serde_json::{Value, json};
use tracklayer::connection_test::{CHECKS, Mode, Report, Request, Status, run};
use tracklayer::load::LoadMethod;
use tracklayer::secrets::SecretSource;
use tracklayer_tests::{
    Emulator, aws, exclusive, fast_retry, openssl_rsa_key, public_pem, repo_root, setting, sfquery,
    unique,
};

/// A registered service user with its own key, and a secret for it.
struct Setup {
    user: String,
    key: String,
    secret: Value,
}

impl Setup {
    async fn new() -> Setup {
        let user = unique("CT").to_ascii_uppercase().replace('-', "_");
        let key = openssl_rsa_key();
        Emulator::default()
            .register_user(json!({"account": setting("SNOWFLAKE_ACCOUNT"), "user": user, "rsa_public_key": public_pem(&key), "pats": [{"token": format!("{user}-pat")}], "default_warehouse": "TRACKLAYER_WH", "roles": ["TRACKLAYER_WRITER"]}))
            .await;
        let secret = json!({
            "account": setting("SNOWFLAKE_ACCOUNT"), "user": user, "private_key": key,
            "role": "TRACKLAYER_WRITER", "warehouse": "TRACKLAYER_WH", "database": "TRACKLAYER",
            "schema": "EVENTS", "host": setting("SNOWFLAKE_EMULATOR_URL"),
        });
        Setup { user, key, secret }
    }

    async fn run(&self, mode: Mode) -> Report {
        self.run_with(mode, LoadMethod::SqlApi).await
    }

    /// `run`, against a clean local Snowflake that answers the next five statements containing
    /// `statement` with `error` (Snowflake's `status`, `code`, `sqlState` and `message`); the
    /// local Snowflake is left clean again.
    async fn run_refused(&self, mode: Mode, statement: &str, error: Value) -> Report {
        let emulator = Emulator::default();
        emulator.clean().await;
        emulator
            .fault(json!({"match": {"statement_contains": statement}, "count": 5, "action": {"snowflake_error": error}}))
            .await;
        let report = self.run(mode).await;
        emulator.clean().await;
        report
    }

    async fn run_with(&self, mode: Mode, load_method: LoadMethod) -> Report {
        let secrets = aws_sdk_secretsmanager::Client::new(&aws().await);
        let name = unique("tracklayer/ct");
        secrets
            .create_secret()
            .name(&name)
            .secret_string(self.secret.to_string())
            .send()
            .await
            .unwrap();
        let source = SecretSource::new(secrets, name, Duration::from_secs(300), fast_retry());
        run(
            &source,
            Request { mode, load_method },
            tokio::time::Instant::now() + Duration::from_secs(60),
        )
        .await
    }
}

fn status(report: &Report, name: &str) -> Status {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no {name} check"))
        .status
}

fn fix(report: &Report, name: &str) -> String {
    report.check(name).unwrap().fix.clone()
}

/// `failed` fails, everything before it passes (or warns), everything after is skipped.
fn assert_fails_at(report: &Report, failed: &str) {
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, CHECKS);
    let at = names.iter().position(|n| *n == failed).unwrap();
    for (i, check) in report.checks.iter().enumerate() {
        let expected = match i.cmp(&at) {
            std::cmp::Ordering::Less => vec![Status::Pass, Status::Warn],
            std::cmp::Ordering::Equal => vec![Status::Fail],
            std::cmp::Ordering::Greater => vec![Status::Skip],
        };
        assert!(
            expected.contains(&check.status),
            "{}: {:?} in {report:#?}",
            check.name,
            check.status
        );
    }
    assert!(!report.ok);
    assert!(!report.check(failed).unwrap().fix.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn success_path_passes_every_check_and_the_event_is_readable() {
    let _guard = exclusive().await;
    let setup = Setup::new().await;
    let report = setup.run(Mode::TestSync).await;
    assert!(report.ok, "{report:#?}");
    assert!(
        report.checks.iter().all(|c| c.status == Status::Pass),
        "{report:#?}"
    );
    let secret = report.check("secret").unwrap();
    assert!(
        secret.detail.contains("key-pair (PKCS#8)"),
        "{}",
        secret.detail
    );
    assert!(secret.detail.contains("SHA256:"), "{}", secret.detail);
    let id = report.test_event_id.clone().unwrap();
    let rows = sfquery(&format!(
        "SELECT EVENT_NAME, MERCHANT_ID FROM RAW_EVENTS WHERE EVENT_ID = '{id}'"
    ));
    assert_eq!(
        rows.text(0, "EVENT_NAME").as_deref(),
        Some("tracklayer_connection_test")
    );
    assert!(
        report
            .check("read_back")
            .unwrap()
            .detail
            .contains("round trip")
    );
    let shown = serde_json::to_string(&report).unwrap();
    assert!(
        !shown.contains(setup.key.lines().nth(1).unwrap()),
        "no key material in the report"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_mode_writes_nothing() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let report = Setup::new().await.run(Mode::Check).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(status(&report, "insert"), Status::Skip);
    assert_eq!(status(&report, "read_back"), Status::Skip);
    assert_eq!(report.test_event_id, None);
    let requests = emulator.requests().await;
    assert!(requests["by_kind"].get("INSERT").is_none(), "{requests}");
    assert!(requests["by_kind"].get("CREATE").is_none(), "{requests}");
}

#[tokio::test(flavor = "multi_thread")]
async fn report_counts_the_rejections_of_the_last_24_hours_by_reason() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let setup = Setup::new().await;
    // The tables exist (a first run creates them); other tests' rejections carry other reasons.
    assert!(setup.run(Mode::TestSync).await.ok);
    let tag = unique("ctq").to_ascii_uppercase().replace('-', "_");
    let (a, b, old) = (format!("{tag}_A"), format!("{tag}_B"), format!("{tag}_OLD"));
    let mut values = Vec::new();
    for (reason, hours_ago, n) in [(&a, 1, 3), (&b, 23, 2), (&a, 25, 4), (&old, 30, 5)] {
        for i in 0..n {
            values.push(format!(
                "(DATEADD('hour', -{hours_ago}, CURRENT_TIMESTAMP()), 'msg-{tag}', 'e-{i}', 'm', '{reason}', 'detail', '{{}}')"
            ));
        }
    }
    sfquery(&format!(
        "INSERT INTO RAW_EVENTS_REJECTED (REJECTED_AT, SOURCE_MESSAGE_ID, EVENT_ID, MERCHANT_ID, REASON, DETAIL, RAW_TEXT) VALUES {}",
        values.join(", ")
    ));
    emulator.clean().await;
    let report = setup.run(Mode::Check).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(status(&report, "quarantine"), Status::Pass);
    let counts = report.rejections_last_24h.clone().unwrap();
    let ours: Vec<(&str, u64)> = counts
        .iter()
        .filter(|(reason, _)| reason.starts_with(&tag))
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    assert_eq!(ours, [(a.as_str(), 3), (b.as_str(), 2)], "{counts:?}");
    let detail = &report.check("quarantine").unwrap().detail;
    assert!(detail.contains(&format!("{a} 3")), "{detail}");
    assert!(detail.contains(&format!("{b} 2")), "{detail}");
    assert!(!detail.contains(&old), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_not_readable_names_the_grant_and_fails_nothing() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let setup = Setup::new().await;
    assert!(setup.run(Mode::TestSync).await.ok);
    emulator
        .fault(json!({"match": {"statement_contains": "FROM RAW_EVENTS_REJECTED WHERE REJECTED_AT"}, "count": 5, "action": {"snowflake_error": {"status": 422, "code": "003001", "sqlState": "42501", "message": "SQL access control error: Insufficient privileges to operate on table 'RAW_EVENTS_REJECTED'"}}}))
        .await;
    let report = setup.run(Mode::TestSync).await;
    emulator.clean().await;
    assert!(report.ok, "a warning, not a failure: {report:#?}");
    assert_eq!(status(&report, "quarantine"), Status::Warn);
    assert_eq!(status(&report, "insert"), Status::Pass);
    assert_eq!(status(&report, "read_back"), Status::Pass);
    assert_eq!(report.rejections_last_24h, None);
    let check = report.check("quarantine").unwrap();
    assert!(check.detail.contains("003001"), "{}", check.detail);
    assert_eq!(
        check.fix,
        "To see rejections here, GRANT SELECT ON TABLE TRACKLAYER.EVENTS.RAW_EVENTS_REJECTED TO ROLE TRACKLAYER_WRITER; (loading needs only INSERT)."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unregistered_key_names_the_fingerprint_and_the_alter_user_to_run() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["private_key"] = json!(openssl_rsa_key());
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "authentication");
    let fix = fix(&report, "authentication");
    assert!(
        fix.contains(&format!(
            "ALTER USER {} SET RSA_PUBLIC_KEY='MII",
            setup.user
        )),
        "{fix}"
    );
    assert!(fix.contains("SHA256:"), "{fix}");
    assert!(
        report
            .check("authentication")
            .unwrap()
            .detail
            .contains("390144")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_token_says_to_issue_a_new_one() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    let object = setup.secret.as_object_mut().unwrap();
    object.remove("private_key");
    object.insert("token".into(), json!("not-a-valid-token"));
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "authentication");
    assert!(
        report
            .check("secret")
            .unwrap()
            .detail
            .contains("programmatic access token")
    );
    let fix = fix(&report, "authentication");
    assert!(fix.contains("PROGRAMMATIC ACCESS TOKEN"), "{fix}");
    assert!(
        fix.contains("invalid, expired or revoked") && fix.contains("no network policy"),
        "both causes of 394400: {fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_refusal_shows_the_login_failure_id_and_the_query_that_reads_the_reason() {
    let _guard = exclusive().await;
    let setup = Setup::new().await;
    // Snowflake's message for a refused JWT carries only a UUID (key-pair troubleshooting doc).
    let report = setup
        .run_refused(
            Mode::Check,
            "CURRENT_USER",
            json!({"status": 401, "code": "390144", "sqlState": "08001", "message": "JWT token is invalid. [0ce9eb56-821d-4ca9-a774-04ae89a0cf5a]"}),
        )
        .await;
    assert_fails_at(&report, "authentication");
    let fix = fix(&report, "authentication");
    for part in [
        "login failure 0ce9eb56-821d-4ca9-a774-04ae89a0cf5a",
        "SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('0ce9eb56-821d-4ca9-a774-04ae89a0cf5a'), 'errorCode');",
        "fingerprint SHA256:",
        &format!("ALTER USER {} SET RSA_PUBLIC_KEY='MII", setup.user),
    ] {
        assert!(fix.contains(part), "{part:?} not in {fix}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn names_written_in_lower_case_as_the_guide_does_pass_every_check() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    for (field, value) in [
        ("role", "tracklayer_writer"),
        ("warehouse", "tracklayer_wh"),
        ("database", "tracklayer"),
        ("schema", "events"),
    ] {
        setup.secret[field] = json!(value);
    }
    let report = setup.run(Mode::TestSync).await;
    assert!(report.ok, "{report:#?}");
    assert!(
        report.checks.iter().all(|c| c.status == Status::Pass),
        "{report:#?}"
    );
    let secret = &report.check("secret").unwrap().detail;
    assert!(
        secret.contains(
            "database TRACKLAYER, schema EVENTS, warehouse TRACKLAYER_WH, role TRACKLAYER_WRITER"
        ),
        "{secret}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_warehouse_in_another_case_fails_naming_both_spellings() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["warehouse"] = json!("\"tracklayer_wh\"");
    let report = setup.run(Mode::Check).await;
    assert_fails_at(&report, "warehouse");
    let check = report.check("warehouse").unwrap();
    let text = format!("{} {}", check.detail, check.fix);
    // The name as written and what it means, the name the account has, and the case rule.
    for part in [
        "\"tracklayer_wh\", which means exactly tracklayer_wh",
        r#"Write the secret's warehouse as "TRACKLAYER_WH""#,
        "unquoted they mean the upper-case name",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_database_in_another_case_fails_the_database_check() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["database"] = json!("\"tracklayer\"");
    let report = setup.run(Mode::Check).await;
    assert_fails_at(&report, "database");
    let check = report.check("database").unwrap();
    // The local Snowflake answers CURRENT_DATABASE() with the upper-cased name; Snowflake
    // answers NULL or refuses the request (090105, 390201): each fails the check naming the
    // setting as written, what it means, and the case rule.
    let text = format!("{} {}", check.detail, check.fix);
    for part in [
        "database",
        "\"tracklayer\", which means exactly tracklayer",
        "unquoted they mean the upper-case name",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn role_snowflake_refuses_fails_the_role_check_with_the_case_rule() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["role"] = json!("\"tracklayer_writer\"");
    let report = setup
        .run_refused(
            Mode::Check,
            "CURRENT_USER",
            json!({"status": 422, "code": "390189", "sqlState": "08004", "message": "Role 'tracklayer_writer' specified in the connect string does not exist or not authorized. Contact your local system administrator, or attempt to login with another role, e.g. PUBLIC."}),
        )
        .await;
    assert_fails_at(&report, "role");
    assert_eq!(status(&report, "authentication"), Status::Pass);
    let fix = fix(&report, "role");
    assert!(
        fix.contains(
            r#"the secret's role ("tracklayer_writer", which means exactly tracklayer_writer)"#
        ),
        "{fix}"
    );
    assert!(fix.contains("SHOW ROLES"), "{fix}");
    assert!(
        fix.contains("unquoted they mean the upper-case name"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn name_snowflake_cannot_read_fails_the_secret_check_and_says_to_quote_it() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["warehouse"] = json!("tracklayer-wh");
    let report = setup.run(Mode::Check).await;
    assert_fails_at(&report, "secret");
    let check = report.check("secret").unwrap();
    assert!(
        check
            .detail
            .contains("warehouse: \"tracklayer-wh\" is not a Snowflake identifier"),
        "{}",
        check.detail
    );
    assert!(
        check.fix.contains("Correct the secret's warehouse"),
        "{}",
        check.fix
    );
    assert!(check.fix.contains("double quotes"), "{}", check.fix);
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policy_block_reports_the_address_snowflake_saw() {
    let _guard = exclusive().await;
    let setup = Setup::new().await;
    // The user's own network policy, as ALTER USER ... SET NETWORK_POLICY sets it: the local
    // Snowflake sees this test's requests come from 127.0.0.1.
    Emulator::default()
        .register_user(json!({"account": setting("SNOWFLAKE_ACCOUNT"), "user": setup.user, "rsa_public_key": public_pem(&setup.key), "default_warehouse": "TRACKLAYER_WH", "roles": ["TRACKLAYER_WRITER"], "network_policy": {"allowed_ip_list": ["203.0.113.0/24"]}}))
        .await;
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "authentication");
    let check = report.check("authentication").unwrap();
    assert!(
        check.detail.contains("390422") && check.detail.contains("IP/Token 127.0.0.1"),
        "{}",
        check.detail
    );
    assert_eq!(
        check.fix,
        format!(
            "Network policy blocks login: Snowflake saw the request come from 127.0.0.1: add that address (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to {}, then run connection-test again.",
            setup.user
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policy_block_without_an_address_says_snowflake_did_not_say() {
    let _guard = exclusive().await;
    let setup = Setup::new().await;
    let report = setup
        .run_refused(
            Mode::TestSync,
            "CURRENT_USER",
            json!({"status": 401, "code": "390422", "sqlState": "08004", "message": "Network policy blocks login."}),
        )
        .await;
    assert_fails_at(&report, "authentication");
    assert_eq!(
        fix(&report, "authentication"),
        format!(
            "Network policy blocks login: Snowflake did not say which address it saw: add the loader's egress IPs (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to {}, then run connection-test again.",
            setup.user
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_privileges_give_the_exact_grants() {
    let _guard = exclusive().await;
    let report = Setup::new()
        .await
        .run_refused(
            Mode::TestSync,
            "INSERT INTO RAW_EVENTS (",
            json!({"status": 422, "code": "003001", "sqlState": "42501", "message": "SQL access control error: Insufficient privileges to operate on table 'RAW_EVENTS'"}),
        )
        .await;
    assert_fails_at(&report, "insert");
    let fix = fix(&report, "insert");
    for grant in [
        "GRANT USAGE ON WAREHOUSE TRACKLAYER_WH TO ROLE TRACKLAYER_WRITER;",
        "GRANT USAGE ON DATABASE TRACKLAYER TO ROLE TRACKLAYER_WRITER;",
        "GRANT USAGE ON SCHEMA TRACKLAYER.EVENTS TO ROLE TRACKLAYER_WRITER;",
        "GRANT INSERT, SELECT ON FUTURE TABLES IN SCHEMA TRACKLAYER.EVENTS TO ROLE TRACKLAYER_WRITER;",
    ] {
        assert!(fix.contains(grant), "{grant} missing from {fix}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn object_not_authorized_fails_the_table_check_with_grants() {
    let _guard = exclusive().await;
    let report = Setup::new()
        .await
        .run_refused(
            Mode::TestSync,
            "INFORMATION_SCHEMA.COLUMNS",
            json!({"status": 422, "code": "002003", "sqlState": "42S02", "message": "Object 'TRACKLAYER.INFORMATION_SCHEMA.COLUMNS' does not exist or not authorized."}),
        )
        .await;
    assert_fails_at(&report, "table");
    assert!(fix(&report, "table").contains("GRANT USAGE ON SCHEMA TRACKLAYER.EVENTS"));
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_warehouse_without_auto_resume_says_to_enable_it() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator
        .settings(
            json!({"warehouses": {"TRACKLAYER_WH": {"state": "SUSPENDED", "auto_resume": false}}}),
        )
        .await;
    let report = Setup::new().await.run(Mode::TestSync).await;
    emulator
        .settings(json!({"warehouses": {"TRACKLAYER_WH": {"state": "STARTED", "auto_resume": true, "auto_suspend": 60}}}))
        .await;
    assert_fails_at(&report, "warehouse");
    assert!(fix(&report, "warehouse").contains("SET AUTO_RESUME = TRUE"));
    assert!(report.check("warehouse").unwrap().detail.contains("000608"));
}

#[tokio::test(flavor = "multi_thread")]
async fn warehouse_that_never_suspends_is_a_warning_with_its_cost() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator
        .settings(json!({"warehouses": {"TRACKLAYER_WH": {"auto_suspend": 3600}}}))
        .await;
    let report = Setup::new().await.run(Mode::Check).await;
    emulator
        .settings(json!({"warehouses": {"TRACKLAYER_WH": {"auto_suspend": 60}}}))
        .await;
    assert!(report.ok, "a warning is not a failure");
    let check = report.check("warehouse").unwrap();
    assert_eq!(check.status, Status::Warn);
    assert!(check.detail.contains("60 minutes"), "{}", check.detail);
    assert!(check.fix.contains("AUTO_SUSPEND = 60"), "{}", check.fix);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_table_without_create_privilege_says_grant_create_table() {
    let _guard = exclusive().await;
    let schema = unique("CT_EMPTY").to_ascii_uppercase().replace('-', "_");
    sfquery(&format!("CREATE SCHEMA TRACKLAYER.{schema}"));
    let mut setup = Setup::new().await;
    setup.secret["schema"] = json!(schema);
    let report = setup
        .run_refused(
            Mode::TestSync,
            "CREATE TABLE",
            json!({"status": 422, "code": "003001", "sqlState": "42501", "message": "SQL access control error: Insufficient privileges to operate on schema"}),
        )
        .await;
    assert_fails_at(&report, "table");
    assert!(fix(&report, "table").contains(&format!(
        "GRANT CREATE TABLE ON SCHEMA TRACKLAYER.{schema} TO ROLE TRACKLAYER_WRITER"
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn table_with_missing_and_mistyped_columns_lists_them_by_name() {
    let _guard = exclusive().await;
    let schema = unique("CT_BAD").to_ascii_uppercase().replace('-', "_");
    sfquery(&format!("CREATE SCHEMA TRACKLAYER.{schema}"));
    sfquery(&format!(
        "CREATE TABLE TRACKLAYER.{schema}.RAW_EVENTS (EVENT_ID STRING, EVENT_TIME TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ, MERCHANT_ID STRING, EVENT_NAME STRING, USER_ID STRING, ANONYMOUS_ID STRING, ORDER_ID STRING, PLATFORM STRING, SOURCE STRING, VALUE STRING, CONSENT_STATUS STRING, PROPERTIES VARIANT, RAW_PAYLOAD VARIANT)"
    ));
    let mut setup = Setup::new().await;
    setup.secret["schema"] = json!(schema);
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "table");
    let detail = &report.check("table").unwrap().detail;
    assert!(
        detail.contains("missing column CURRENCY (TEXT)"),
        "{detail}"
    );
    assert!(
        detail.contains("column VALUE is TEXT, expected NUMBER"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_only_secret_says_to_switch_to_key_pair_or_token() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    let object = setup.secret.as_object_mut().unwrap();
    object.remove("private_key");
    object.insert(
        "password".into(),
        json!("replace_with_a_long_generated_secret"),
    );
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "secret");
    assert!(fix(&report, "secret").contains("key-pair"));
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("replace_with_a_long_generated_secret")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_host_fails_the_endpoint_check() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret["host"] = json!("http://127.0.0.1:9");
    let report = setup.run(Mode::TestSync).await;
    assert_fails_at(&report, "endpoint");
    assert!(fix(&report, "endpoint").contains("account identifier"));
}

#[test]
fn the_real_binary_answers_with_the_report_through_a_lambda_runtime() {
    let root = repo_root();
    let binary = root.join("target/debug/connection-test");
    assert!(
        binary.exists(),
        "build the workspace first (make test does)"
    );
    let out = std::process::Command::new(setting("PYTHON"))
        .arg(root.join("infra/local/lambda_host.py"))
        .args([
            "invoke",
            "--name",
            "connection-test",
            "--event",
            r#"{"mode": "check"}"#,
        ])
        .arg("--binary")
        .arg(&binary)
        .args([
            "--env",
            &format!("TRACKLAYER_SECRET_ID={}", setting("TRACKLAYER_SECRET_ID")),
        ])
        .envs(tracklayer_tests::stack())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &summary["responses"][0];
    assert_eq!(report["ok"], true, "{summary}");
    assert_eq!(report["checks"][0]["name"], "secret");
    assert_eq!(report["checks"].as_array().unwrap().len(), 11);
    assert_eq!(report["checks"][8]["name"], "quarantine");
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_checks_reach_the_ingest_host_commit_a_test_row_and_read_it_back() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator
        .settings(json!({"streaming": {"commit_delay_ms": 200}}))
        .await;
    let report = Setup::new()
        .await
        .run_with(Mode::TestSync, LoadMethod::Streaming)
        .await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        &names[names.len() - 4..],
        [
            "streaming_host",
            "streaming_token",
            "streaming_channel",
            "streaming_append"
        ]
    );
    assert!(report.ok, "{report:?}");
    let append = report.check("streaming_append").unwrap();
    assert!(
        append.detail.contains("committed and read back"),
        "{}",
        append.detail
    );
    let id = append
        .detail
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(';');
    let rows = sfquery(&format!(
        "SELECT EVENT_NAME FROM RAW_EVENTS WHERE EVENT_ID = '{id}'"
    ));
    assert_eq!(
        rows.text(0, "EVENT_NAME").as_deref(),
        Some("tracklayer_connection_test")
    );
    // Check mode reaches the host and the token but opens no channel.
    let checked = Setup::new()
        .await
        .run_with(Mode::Check, LoadMethod::Streaming)
        .await;
    assert_eq!(status(&checked, "streaming_token"), Status::Pass);
    assert_eq!(status(&checked, "streaming_channel"), Status::Skip);
    let requests = emulator.requests().await;
    assert_eq!(requests["by_streaming"]["open"], 1, "{requests}");
    emulator.clean().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_with_a_token_only_secret_fails_saying_it_needs_a_key_pair() {
    let _guard = exclusive().await;
    let mut setup = Setup::new().await;
    setup.secret.as_object_mut().unwrap().remove("private_key");
    setup.secret["token"] = json!(format!("{}-pat", setup.user));
    let report = setup.run_with(Mode::Check, LoadMethod::Streaming).await;
    assert_eq!(
        status(&report, "streaming_host"),
        Status::Fail,
        "{report:?}"
    );
    let host = report.check("streaming_host").unwrap();
    assert!(
        host.detail.contains("needs key-pair authentication"),
        "{}",
        host.detail
    );
    assert!(
        host.fix.contains("TRACKLAYER_LOAD_METHOD=sql_api"),
        "{}",
        host.fix
    );
}
