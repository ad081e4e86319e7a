//! flush: run on a schedule (or by hand with `{"max_seconds": N}`); loads the chunks ingest
//! staged, and sends nothing to Snowflake when nothing waits. Logic lives in `tracklayer::flush`.
#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tracklayer::config::invocation_deadline;
use tracklayer::config::{at_start, input_or_default};
use tracklayer::flush::{Flush, FlushConfig, FlushReport, FlushRequest};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = at_start("flush", FlushConfig::from_env())?;
    let aws = aws_config::load_from_env().await;
    let flush = Arc::new(Flush::new(config, &aws));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let flush = flush.clone();
        async move {
            // Other fields (a scheduler's payload) are ignored; only max_seconds is ours.
            let request: FlushRequest =
                input_or_default(event.payload, r#"{} or {"max_seconds": N}"#)?;
            let deadline = invocation_deadline(event.context.deadline(), std::time::Duration::ZERO);
            let report = flush.run(request, deadline).await;
            println!("{}", report.to_line());
            Ok::<FlushReport, Error>(report)
        }
    }))
    .await
}
