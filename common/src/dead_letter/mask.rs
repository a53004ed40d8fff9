//! Tests of card-number masking in dead letters, on real Avro records in the Confluent
//! framing (the masker is `paystream_sensitive::mask`).

use super::*;

mod tests;

mod proptests;
