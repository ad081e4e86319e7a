//! connection-test: run by hand (`{"mode": "check" | "test_sync"}`); answers with a report that
//! names the failing step and its fix. Logic lives in `tracklayer::connection_test`.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracklayer::config::invocation_deadline;
use tracklayer::config::{at_start, env_parse, env_required, input_or_default};
use tracklayer::connection_test::{Report, Request, run};
use tracklayer::load::LoadMethod;
use tracklayer::secrets::SecretSource;
use tracklayer::snowflake::RetryPolicy;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let secret_id = at_start("connection-test", env_required("TRACKLAYER_SECRET_ID"))?;
    let ttl = Duration::from_secs(env_parse("TRACKLAYER_SECRET_TTL_SECONDS", 300u64)?);
    let load_method = at_start("connection-test", LoadMethod::from_env())?;
    let aws = aws_config::load_from_env().await;
    let source = Arc::new(SecretSource::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        secret_id,
        ttl,
        RetryPolicy::default(),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let source = source.clone();
        async move {
            let mut request: Request =
                input_or_default(event.payload, r#"{"mode": "check" | "test_sync"}"#)?;
            request.load_method = load_method;
            let deadline = invocation_deadline(event.context.deadline(), Duration::from_secs(1));
            let report = run(&source, request, deadline).await;
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            Ok::<Report, Error>(report)
        }
    }))
    .await
}
