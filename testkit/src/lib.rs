//! Test and benchmark support for TrackLayer that the Lambda functions never link: the
//! realistic event generator ([`sample`]), SQS message bodies built from it ([`messages`]), and
//! the `sample-events` binary that prints them for the Python benchmarks and tests, and the
//! [`openssl`] command line for tests that make keys.

pub mod messages;
pub mod openssl;
pub mod sample;
