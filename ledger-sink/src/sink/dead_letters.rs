//! The sink's dead letters: the records PostgreSQL refused (or that did not decode or
//! balance), produced to `<source topic>.dlq` in the dead-letter format of the runtime,
//! at stage `sink`.

use super::*;

impl Shared {
    /// Produces the dead letter of each rejected record of `batch` to `<source
    /// topic>.dlq` (same partition, original key and bytes, headers of
    /// [`dead_letter_record`] with stage `sink`) and waits for every delivery.
    ///
    /// # Errors
    /// [`SinkError::Kafka`] when a dead letter is not delivered.
    pub(super) async fn produce_dead_letters(
        &self,
        batch: &Batch,
        rejections: &[Rejection],
    ) -> Result<()> {
        for rejection in rejections {
            let origin = &batch.records[rejection.index].origin;
            let record = sink_dead_letter(origin, rejection, &self.config.application_id);
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_str()),
                });
            }
            let mut kafka_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic)
                .partition(record.partition)
                .timestamp(record.timestamp_ms)
                .headers(headers);
            if let Some(key) = record.key.as_deref() {
                kafka_record = kafka_record.key(key);
            }
            if let Some(value) = record.value.as_deref() {
                kafka_record = kafka_record.payload(value);
            }
            self.producer
                .send(kafka_record, rdkafka::util::Timeout::Never)
                .await
                .map_err(|(source, _)| SinkError::Kafka {
                    context: format!(
                        "producing the dead letter of {}/{}@{} to {}",
                        origin.topic, origin.partition, origin.offset, record.topic
                    ),
                    source,
                })?;
        }
        Ok(())
    }
}

/// The dead letter of a record the sink rejected: [`paystream_common::dead_letter::dead_letter_record`] with the
/// rejection's reason and error, and one `paystream.dlq.stage` header, `sink`.
pub fn sink_dead_letter(
    origin: &Origin,
    rejection: &Rejection,
    application_id: &str,
) -> DeadLetterRecord {
    dead_letter_record_at(
        origin,
        rejection.reason.into(),
        Stage::Sink,
        &rejection.error,
        application_id,
    )
}

#[cfg(test)]
mod tests {
    use paystream_common::dead_letter::headers;

    use super::*;

    #[test]
    fn a_sink_dead_letter_keeps_the_bytes_and_says_sink_rejected_at_stage_sink() {
        let origin = Origin {
            topic: "t1.ledger_entries".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"pay-1".to_vec()),
            value: Some(b"\x00\x00\x00\x00\x07entry".to_vec()),
        };
        let rejection = Rejection {
            index: 0,
            reason: DeadLetterReason::SinkRejected,
            sqlstate: Some("22021".into()),
            error: "invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)".into(),
        };
        let record = sink_dead_letter(&origin, &rejection, "app");
        assert_eq!(record.topic, "t1.ledger_entries.dlq");
        assert_eq!(record.partition, 2);
        assert_eq!(record.key, origin.key);
        assert_eq!(record.value, origin.value);
        let header = |name: &str| -> Vec<&str> {
            record
                .headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(header(headers::REASON), ["sink_rejected"]);
        assert_eq!(header(headers::STAGE), ["sink"]);
        assert_eq!(header(headers::SOURCE_TOPIC), ["t1.ledger_entries"]);
        assert_eq!(header(headers::SOURCE_PARTITION), ["2"]);
        assert_eq!(header(headers::SOURCE_OFFSET), ["41"]);
        assert!(header(headers::ERROR)[0].contains("22021"));
    }
}
