//! What can go wrong decoding Kafka records into bronze batches, other than a bad record (a bad
//! record is a [`super::RecordError`] and goes to the DLQ; these stop the batch).

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A reader or writer schema that arrow-avro cannot use.
    #[error("avro schema {what} is not usable: {detail}")]
    AvroSchema { what: String, detail: String },
    #[error("building the bronze batch failed: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// Splitting the decoded rows by `event_date`.
    #[error(transparent)]
    Split(#[from] crate::lake::LakeError),
}
