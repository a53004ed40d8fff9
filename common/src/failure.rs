//! What a failed record carries into its dead letter: where it came from, with its
//! original bytes ([`Origin`]), the stage it failed at ([`Stage`]) and why
//! ([`DeadLetterReason`]). Processors, serdes, the dead-letter policy
//! and the record collector all speak them.

/// The stage of the pipeline at which a record failed, written as the
/// `paystream.dlq.stage` header (Kafka Streams' deserialization, processing and
/// production exception handlers are the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Reading the record: size, framing, the schema, decoding.
    Decode,
    /// Checking the decoded values against the record's contract.
    Validate,
    /// A processor handling the record (or its punctuation).
    Process,
    /// Encoding or producing an output or changelog record of it.
    Produce,
    /// Writing it to an external system (a sink connector such as a database writer).
    Sink,
}

impl Stage {
    /// The snake_case name written in headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Process => "process",
            Stage::Produce => "produce",
            Stage::Sink => "sink",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was dead-lettered: a snake_case name (the `paystream.dlq.reason` header
/// and a bounded metric label) and the stage at which records usually get it. The
/// runtime names its own reasons here; an application adds its own with
/// [`DeadLetterReason::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeadLetterReason {
    name: &'static str,
    stage: Stage,
}

impl DeadLetterReason {
    /// Empty, truncated or not valid for its schema.
    pub const UNDECODABLE: DeadLetterReason = DeadLetterReason::new("undecodable", Stage::Decode);
    /// The schema id is unknown to the registry or not this topic's record.
    pub const UNKNOWN_SCHEMA: DeadLetterReason =
        DeadLetterReason::new("unknown_schema", Stage::Decode);
    /// The first byte is not the Confluent magic byte 0.
    pub const BAD_MAGIC_BYTE: DeadLetterReason =
        DeadLetterReason::new("bad_magic_byte", Stage::Decode);
    /// The record is larger than the runtime carries through its state stores and
    /// changelogs, or the broker refused an output of it as too large.
    pub const RECORD_TOO_LARGE: DeadLetterReason =
        DeadLetterReason::new("record_too_large", Stage::Process);
    /// A processor, a serializer or the broker failed on this record's data (Kafka
    /// Streams' processing exception handler, KIP-1033).
    pub const PROCESSING_FAILED: DeadLetterReason =
        DeadLetterReason::new("processing_failed", Stage::Process);

    /// A reason named `name` (snake_case, bounded: a metric label), given at `stage` when
    /// a processor dead-letters a record with it.
    pub const fn new(name: &'static str, stage: Stage) -> Self {
        DeadLetterReason { name, stage }
    }

    /// The snake_case name written in headers and metric labels.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// The stage at which records get this reason when a processor emits it (the runtime
    /// names the stage itself for what it dead-letters).
    pub fn default_stage(self) -> Stage {
        self.stage
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Where a record came from, with its original bytes: what a dead letter carries (and
/// what an application may store with a record that waits, serde-serializable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}
