use rdkafka::Timestamp;

use super::*;

const LIFECYCLE: TaskId = TaskId {
    sub_topology: 1,
    partition: 0,
};
const DEDUPE: TaskId = TaskId {
    sub_topology: 0,
    partition: 0,
};

fn upstream() -> HashMap<u8, Vec<u8>> {
    HashMap::from([(1, vec![0])])
}

fn record(topic: &str, offset: i64, timestamp_ms: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(vec![1]),
        Some(b"k".to_vec()),
        topic.to_string(),
        Timestamp::CreateTime(timestamp_ms),
        0,
        offset,
        None,
    )
}

fn take(groups: &mut PartitionGroups, now: Instant) -> Option<(String, i64, bool)> {
    match groups.next(now) {
        Next::Record {
            message, enforced, ..
        } => Some((message.topic().to_string(), message.offset(), enforced)),
        _ => None,
    }
}

#[test]
fn the_lowest_timestamp_goes_first_across_partitions_and_tasks() {
    let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
    groups.push(LIFECYCLE, false, record("auth", 0, 30));
    groups.push(LIFECYCLE, false, record("auth", 1, 50));
    groups.push(LIFECYCLE, true, record("repartition", 0, 40));
    groups.push(DEDUPE, false, record("initiated", 0, 10));
    let now = Instant::now();
    let order: Vec<_> = std::iter::from_fn(|| take(&mut groups, now))
        .map(|(t, o, _)| (t, o))
        .collect();
    assert_eq!(
        order,
        [
            ("initiated".to_string(), 0),
            ("auth".to_string(), 0),
            ("repartition".to_string(), 0),
            ("auth".to_string(), 1)
        ]
    );
    assert!(groups.is_empty());
}

#[test]
fn a_task_holds_back_for_records_it_wrote_to_its_repartition_partition() {
    let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
    let repartition = ("repartition".to_string(), 0);
    // The repartition partition is known (one record read), then empty.
    groups.push(LIFECYCLE, true, record("repartition", 0, 5));
    let now = Instant::now();
    assert!(take(&mut groups, now).is_some());
    // The dedupe wrote a payment stamped 20; an auth stamped 30 arrives.
    groups.wrote(LIFECYCLE, repartition.clone(), 20);
    groups.push(LIFECYCLE, false, record("auth", 0, 30));
    assert!(matches!(groups.next(now), Next::HoldBack { .. }));
    // Committed, still not read back: still held.
    groups.committed();
    assert!(matches!(groups.next(now), Next::HoldBack { .. }));
    // The payment arrives: it goes first, then the auth, unforced.
    groups.push(LIFECYCLE, true, record("repartition", 1, 20));
    assert_eq!(
        take(&mut groups, now),
        Some(("repartition".into(), 1, false))
    );
    assert_eq!(take(&mut groups, now), Some(("auth".into(), 0, false)));
}

#[test]
fn holding_back_ends_after_max_task_idle_and_when_the_write_aborted() {
    let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
    groups.push(LIFECYCLE, true, record("repartition", 0, 5));
    let start = Instant::now();
    take(&mut groups, start);
    groups.wrote(LIFECYCLE, ("repartition".into(), 0), 20);
    groups.push(LIFECYCLE, false, record("auth", 0, 30));
    groups.push(LIFECYCLE, false, record("auth", 1, 31));
    let Next::HoldBack { until } = groups.next(start) else {
        panic!("expected to hold back");
    };
    assert_eq!(until, start + Duration::from_millis(500));
    assert_eq!(
        take(&mut groups, until),
        Some(("auth".into(), 0, true)),
        "processed, enforced, once max_task_idle has passed"
    );
    // Aborted: nothing is awaited from the open transaction any more.
    groups.aborted();
    assert_eq!(take(&mut groups, until), Some(("auth".into(), 1, false)));
}

#[test]
fn a_full_queue_pauses_its_partition_and_resumes_at_a_quarter() {
    let mut groups = PartitionGroups::new(8, Duration::from_millis(500), upstream());
    let mut paused = None;
    for offset in 0..8 {
        paused = paused.or(groups.push(DEDUPE, false, record("initiated", offset, offset)));
    }
    assert_eq!(paused, Some(("initiated".to_string(), 0)));
    let now = Instant::now();
    let mut resumed = None;
    for _ in 0..6 {
        if let Next::Record { resume, .. } = groups.next(now) {
            resumed = resumed.or(resume);
        }
    }
    assert_eq!(resumed, Some(("initiated".to_string(), 0)));
    assert_eq!(groups.buffered, 2);
}

#[test]
fn after_a_resume_the_task_waits_for_the_refill_of_earlier_records() {
    let mut groups = PartitionGroups::new(4, Duration::from_millis(500), upstream());
    for offset in 0..4 {
        groups.push(LIFECYCLE, false, record("auth", offset, offset));
    }
    groups.push(LIFECYCLE, false, record("settlement", 0, 1_000));
    let now = Instant::now();
    for _ in 0..4 {
        assert_eq!(take(&mut groups, now).map(|(t, ..)| t), Some("auth".into()));
    }
    // auth was resumed and is empty: the settlement (later) waits for its refill.
    assert!(matches!(groups.next(now), Next::HoldBack { .. }));
    groups.push(LIFECYCLE, false, record("auth", 4, 4));
    assert_eq!(take(&mut groups, now), Some(("auth".into(), 4, false)));
    assert_eq!(
        take(&mut groups, now),
        Some(("settlement".into(), 0, false))
    );
}

#[test]
fn a_task_waits_for_an_upstream_partition_whose_end_is_beyond_what_was_read() {
    let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
    let initiated = ("initiated".to_string(), 0);
    groups.push(DEDUPE, false, record("initiated", 0, 10));
    groups.push(LIFECYCLE, false, record("auth", 0, 30));
    let now = Instant::now();
    assert_eq!(take(&mut groups, now), Some(("initiated".into(), 0, false)));
    // The broker holds more of `initiated` than was read: the auth waits for it.
    groups.set_known_ends(
        HashMap::from([(initiated.clone(), 5)]),
        HashMap::from([(initiated.clone(), 1)]),
    );
    assert!(matches!(groups.next(now), Next::HoldBack { .. }));
    groups.push(DEDUPE, false, record("initiated", 1, 20));
    assert_eq!(take(&mut groups, now), Some(("initiated".into(), 1, false)));
    // Read up to its end: nothing earlier is coming.
    groups.set_known_ends(HashMap::from([(initiated.clone(), 2)]), HashMap::new());
    assert_eq!(take(&mut groups, now), Some(("auth".into(), 0, false)));
}

#[test]
fn writing_tasks_wait_for_their_siblings() {
    let sibling = TaskId {
        sub_topology: 0,
        partition: 1,
    };
    let mut groups = PartitionGroups::new(100, Duration::from_millis(500), upstream());
    groups.push(DEDUPE, false, record("initiated", 0, 10));
    groups.push(sibling, false, record("initiated-1", 0, 5));
    let now = Instant::now();
    assert_eq!(
        take(&mut groups, now),
        Some(("initiated-1".into(), 0, false))
    );
    groups.set_known_ends(
        HashMap::from([(("initiated-1".into(), 0), 9)]),
        HashMap::new(),
    );
    // Its sibling has more on the broker, stamped perhaps before 10: wait.
    assert!(matches!(groups.next(now), Next::HoldBack { .. }));
}

#[test]
fn clearing_a_partition_drops_its_records_and_reports_a_capacity_pause() {
    let mut groups = PartitionGroups::new(4, Duration::from_millis(500), upstream());
    for offset in 0..4 {
        groups.push(DEDUPE, false, record("initiated", offset, offset));
    }
    groups.push(LIFECYCLE, false, record("auth", 0, 0));
    assert!(groups.has_queued(&("initiated".into(), 0)));
    assert!(groups.clear(&("initiated".into(), 0)));
    assert!(!groups.has_queued(&("initiated".into(), 0)));
    assert_eq!(groups.buffered, 1);
    assert!(groups.clear_all().is_empty());
    assert!(groups.is_empty());
}
