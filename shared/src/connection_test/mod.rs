//! connection-test: an ordered diagnosis of everything between the secret and a row read back,
//! with the fix for every failure in our own words. Run by hand; `check` writes nothing.

mod checks;
mod fixes;
mod report;
mod streaming;

use serde::Deserialize;
use tokio::time::Instant;

use std::sync::Arc;

use crate::load::LoadMethod;
use crate::secrets::SecretSource;
use crate::snowflake::{Client, ErrorKind, RetryPolicy, Table};

use checks::{
    CONTEXT_SQL, Context, Probe, TableState, check_namespace, check_quarantine, check_role,
    check_table, check_warehouse, describe_secret, test_sync,
};
use fixes::{Names, auth_fix, context_check, secret_fix};
use report::Checks;
pub use report::{CHECKS, Check, Report, Status};

/// `event_name` of the test event, easy to filter out downstream.
pub const TEST_EVENT_NAME: &str = "tracklayer_connection_test";

/// What to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every check, writing nothing.
    Check,
    /// Every check, then write one test event and read it back.
    #[default]
    TestSync,
}

/// The invocation input: `{"mode": "check" | "test_sync"}`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Request {
    /// Default `test_sync`.
    #[serde(default)]
    pub mode: Mode,
    /// How the loader loads (`TRACKLAYER_LOAD_METHOD`, not part of the input): streaming adds
    /// the Snowpipe Streaming checks.
    #[serde(skip)]
    pub load_method: LoadMethod,
}

/// Runs the diagnosis against the secret `source` reads.
pub async fn run(source: &SecretSource, request: Request, deadline: Instant) -> Report {
    let mut checks = Checks {
        done: Vec::new(),
        started: Instant::now(),
        rejections: None,
        streaming: request.load_method == LoadMethod::Streaming,
    };
    let settings = match source.settings().await {
        Ok(settings) => settings,
        Err(e) => {
            checks.fail("secret", e.to_string(), secret_fix(&e));
            return checks.finish(None);
        }
    };
    checks.pass("secret", describe_secret(source.secret_id(), &settings));
    let names = Names::of(&settings);
    let client = match settings.into_client(RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    }) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            checks.fail(
                "endpoint",
                e.to_string(),
                "check the secret's account and host".into(),
            );
            return checks.finish(None);
        }
    };
    let mut test_event_id = None;
    diagnose(
        &client,
        &names,
        request,
        deadline,
        &mut checks,
        &mut test_event_id,
    )
    .await;
    checks.finish(test_event_id)
}

async fn diagnose(
    client: &Arc<Client>,
    names: &Names,
    request: Request,
    deadline: Instant,
    checks: &mut Checks,
    test_event_id: &mut Option<String>,
) {
    let mode = request.mode;
    match client.probe(deadline).await {
        Ok(status) => checks.pass(
            "endpoint",
            format!("{} answered HTTP {status}", client.base_url()),
        ),
        Err(e) => {
            checks.fail(
                "endpoint",
                e.to_string(),
                "Check the secret's account identifier (e.g. xy12345.eu-central-1 or myorg-myaccount) and, if set, host; make sure the function's network (VPC, NAT, proxy) can reach it on port 443.".into(),
            );
            return;
        }
    }

    let probe = Probe {
        client,
        names,
        deadline,
    };
    let who = match probe.query(CONTEXT_SQL.into()).await {
        Ok(result) => Context::of(&result),
        Err(e) => {
            match context_check(&e) {
                Some(failed)
                    if e.kind() == ErrorKind::Configuration || e.kind() == ErrorKind::Warehouse =>
                {
                    checks.pass(
                        "authentication",
                        "Snowflake accepted the credentials and refused the request's context"
                            .into(),
                    );
                    for name in ["role", "warehouse", "database", "schema"]
                        .into_iter()
                        .take_while(|n| *n != failed)
                    {
                        checks.record(
                            name,
                            Status::Warn,
                            format!("not verified: Snowflake refused the request's {failed} first"),
                            format!("Run connection-test again once the {failed} check passes."),
                        );
                    }
                    checks.fail(failed, e.to_string(), e.fix());
                }
                _ => {
                    let fix = auth_fix(&e, names);
                    checks.fail("authentication", e.to_string(), fix);
                }
            }
            return;
        }
    };
    checks.pass(
        "authentication",
        format!(
            "signed in as {}",
            who.user.as_deref().unwrap_or(&names.user)
        ),
    );
    if !check_role(names, &who, checks) {
        return;
    }
    if !check_warehouse(&probe, &who, checks).await {
        return;
    }
    if !check_namespace(&probe, &who, checks).await {
        return;
    }
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let mut quarantine_exists = true;
    for table in [Table::RawEvents, Table::Rejected] {
        match check_table(&probe, table, mode).await {
            TableState::Ready(detail) => found.push(detail),
            TableState::Missing(detail, fix) => {
                quarantine_exists &= table != Table::Rejected;
                warnings.push((detail, fix));
            }
            TableState::Broken(detail, fix) => {
                checks.fail("table", detail, fix);
                return;
            }
        }
    }
    if let Some((_, fix)) = warnings.first() {
        let detail = found
            .into_iter()
            .chain(warnings.iter().map(|(d, _)| d.clone()))
            .collect::<Vec<_>>()
            .join("; ");
        checks.record("table", Status::Warn, detail, fix.clone());
    } else {
        checks.pass("table", found.join("; "));
    }
    if quarantine_exists {
        check_quarantine(&probe, checks).await;
    } else {
        checks.record(
            "quarantine",
            Status::Skip,
            "skipped: RAW_EVENTS_REJECTED does not exist yet, so nothing was rejected".into(),
            String::new(),
        );
    }
    if mode == Mode::TestSync {
        *test_event_id = test_sync(&probe, checks).await;
    }
    if request.load_method == LoadMethod::Streaming
        && !checks.failed()
        && let Some(id) = streaming::check_streaming(client, &probe, mode, checks).await
    {
        test_event_id.get_or_insert(id);
    }
}
