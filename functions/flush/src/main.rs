//! flush: run on a schedule (or by hand with `{"max_seconds": N}`); loads the chunks ingest
//! staged, and sends nothing to Snowflake when nothing waits. Logic lives in `tracklayer::flush`.
#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracklayer::flush::{Flush, FlushConfig, FlushReport, FlushRequest};
use tracklayer::load::invocation_deadline;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = FlushConfig::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "flush cannot start: fix this setting");
    })?;
    let aws = aws_config::load_from_env().await;
    let flush = Arc::new(Flush::new(config, &aws));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let flush = flush.clone();
        async move {
            // Other fields (a scheduler's payload) are ignored; only max_seconds is ours.
            let request: FlushRequest = match event.payload {
                Value::Null => FlushRequest::default(),
                payload => serde_json::from_value(payload).map_err(|e| {
                    format!(r#"invalid input ({e}); expected {{}} or {{"max_seconds": N}}"#)
                })?,
            };
            let deadline = invocation_deadline(event.context.deadline(), std::time::Duration::ZERO);
            let report = flush.run(request, deadline).await;
            println!("{}", report.to_line());
            Ok::<FlushReport, Error>(report)
        }
    }))
    .await
}
