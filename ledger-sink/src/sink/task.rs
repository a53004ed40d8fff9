//! One sink task: its consumer (assigned every partition of its topics from the offsets
//! stored in PostgreSQL), its loop of batches, its lag and its caught-up check.

use super::*;

impl SinkTask {
    /// Creates the task's consumer and end-offsets client and assigns it every partition
    /// of `topics` at its offset in `stored` (the beginning when none is stored).
    ///
    /// # Errors
    /// [`SinkError::Kafka`] / [`SinkError::Runtime`] for Kafka, a missing topic or a
    /// dead-letter topic with fewer partitions than its source.
    pub(super) fn new(
        shared: &Shared,
        name: &'static str,
        topics: &[&str],
        stored: &HashMap<(String, i32), i64>,
    ) -> Result<Self> {
        let config = &shared.config;
        let metrics = &shared.metrics;
        let group = format!("{}-ledger-sink", config.application_id);
        let consumer: StreamConsumer = read_committed_consumer_config(config, &group)
            .create()
            .map_err(|source| SinkError::Kafka {
                context: "creating the sink consumer".into(),
                source,
            })?;
        let end_offsets = EndOffsets::new(config, &group).map_err(|source| SinkError::Kafka {
            context: "creating the sink's end-offsets client".into(),
            source,
        })?;
        let timeout = Duration::from_millis(config.kafka.request_timeout_ms);
        let mut assignment = TopicPartitionList::new();
        let mut next_offsets = HashMap::new();
        for &topic in topics {
            // Series start at 0, so that the first dead letter shows as an increase.
            metrics
                .dead_lettered
                .with_label_values(&[topic, DeadLetterReason::SinkRejected.as_str()]);
            let partitions =
                tokio::task::block_in_place(|| partition_count(&consumer, topic, timeout))?;
            // A dead letter goes to its source's partition number.
            let dead_letter_topic = TopicNames::dead_letter(topic);
            let dead_letter_partitions = tokio::task::block_in_place(|| {
                partition_count(&consumer, &dead_letter_topic, timeout)
            })?;
            if dead_letter_partitions < partitions {
                return Err(paystream_common::Error::TooFewPartitions {
                    topic: dead_letter_topic,
                    found: dead_letter_partitions,
                    needed: partitions,
                }
                .into());
            }
            for partition in 0..partitions {
                let offset = stored
                    .get(&(topic.to_string(), partition))
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(|source| SinkError::Kafka {
                        context: "building the sink assignment".into(),
                        source,
                    })?;
                if let Offset::Offset(o) = offset {
                    next_offsets.insert((topic.to_string(), partition), o);
                }
            }
        }
        consumer
            .assign(&assignment)
            .map_err(|source| SinkError::Kafka {
                context: "assigning the sink partitions".into(),
                source,
            })?;
        info!(
            task = name,
            ?topics,
            partitions = assignment.count(),
            resumed_from_stored_offsets = next_offsets.len(),
            "sink task started"
        );
        Ok(SinkTask {
            name,
            consumer,
            next_offsets,
            end_offsets,
            last_lag_update: Instant::now(),
        })
    }

    /// Runs the task until `shutdown` turns true, or until `upstream_done` is true and every
    /// assigned partition has been written up to its end.
    ///
    /// # Errors
    /// A non-retriable [`SinkError`], or a retriable one that outlasted the retries.
    pub(super) async fn run(
        mut self,
        shared: &Shared,
        mut shutdown: watch::Receiver<bool>,
        upstream_done: watch::Receiver<bool>,
    ) -> Result<SinkSummary> {
        let mut summary = SinkSummary::default();
        let linger = Duration::from_millis(shared.sink.batch_linger_ms);
        loop {
            let mut batch = Batch::default();
            // Until the first record: wake up now and then to check lag and the end.
            let mut deadline = tokio::time::Instant::now() + IDLE_WAKE;
            while batch.len() < shared.sink.batch_rows_max {
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            shared.write(self.name, &batch, &mut summary).await?;
                            return Ok(summary);
                        }
                    }
                    received = tokio::time::timeout_at(deadline, self.consumer.recv()) => {
                        match received {
                            Ok(Ok(message)) => {
                                if batch.is_empty() {
                                    deadline = tokio::time::Instant::now() + linger;
                                }
                                shared.add(&mut batch, &message).await?;
                            }
                            Ok(Err(e)) => warn!(error = %e, "sink consumer error (librdkafka retries)"),
                            Err(_linger_elapsed) => break,
                        }
                    }
                }
            }
            let wrote_records = !batch.is_empty();
            for (key, offset) in &batch.next_offsets {
                self.next_offsets.insert(key.clone(), *offset);
            }
            shared.write(self.name, &batch, &mut summary).await?;
            if self.last_lag_update.elapsed() >= LAG_UPDATE_INTERVAL {
                self.caught_up(shared)?;
            }
            if !wrote_records && *upstream_done.borrow() && self.caught_up(shared)? {
                info!(task = self.name, ?summary, "sink task caught up");
                return Ok(summary);
            }
        }
    }

    /// True when every assigned partition has been read to its high watermark; sets the
    /// sink lag per partition on the way.
    fn caught_up(&mut self, shared: &Shared) -> Result<bool> {
        self.last_lag_update = Instant::now();
        let timeout = Duration::from_millis(shared.config.kafka.request_timeout_ms);
        let kafka = |context: &str| {
            let context = context.to_string();
            move |source| SinkError::Kafka { context, source }
        };
        let positions = offsets(
            &self
                .consumer
                .position()
                .map_err(kafka("reading sink positions"))?,
        );
        let assigned: Vec<(String, i32)> = self
            .consumer
            .assignment()
            .map_err(kafka("reading the sink's assignment"))?
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        // One ListOffsets request on a client of its own (see `EndOffsets`).
        let ends = self
            .end_offsets
            .ends(&assigned, timeout)
            .map_err(kafka("listing the ends of the sink's partitions"))?;
        // Not read in this run and never written: from the first offset retention kept.
        let unread: Vec<(String, i32)> = assigned
            .iter()
            .filter(|key| !positions.contains_key(*key) && !self.next_offsets.contains_key(*key))
            .cloned()
            .collect();
        let starts = if unread.is_empty() {
            HashMap::new()
        } else {
            self.end_offsets
                .starts(&unread, timeout)
                .map_err(kafka("listing the starts of the sink's partitions"))?
        };
        let mut all = true;
        for key in &assigned {
            let high = ends.get(key).copied().unwrap_or(0);
            // librdkafka's position moves past transaction markers; our own record of
            // written offsets covers partitions not read in this run.
            let position = positions
                .get(key)
                .copied()
                .into_iter()
                .chain(self.next_offsets.get(key).copied())
                .chain(starts.get(key).copied())
                .max()
                .unwrap_or(0);
            shared
                .metrics
                .lag
                .with_label_values(&[&key.0, &key.1.to_string()])
                .set((high - position).max(0));
            if position < high {
                all = false;
            }
        }
        Ok(all)
    }
}
