//! ingest: SQS-triggered; validates and batches TrackLayer events, then inserts them
//! (stream mode) or stages them for flush (scheduled mode). Logic lives in `tracklayer::ingest`.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tracklayer::config::at_start;
use tracklayer::config::invocation_deadline;
use tracklayer::ingest::{Ingest, IngestConfig};

/// Time kept back from Lambda's deadline to answer with the batch response.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = at_start("ingest", IngestConfig::from_env())?;
    let aws = aws_config::load_from_env().await;
    let ingest = Arc::new(Ingest::new(&config, &aws));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ingest = ingest.clone();
        async move {
            let deadline = invocation_deadline(event.context.deadline(), ANSWER_MARGIN);
            let (response, summary) = ingest
                .handle(&event.payload, &event.context.request_id, deadline)
                .await;
            println!("{}", summary.to_line());
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
