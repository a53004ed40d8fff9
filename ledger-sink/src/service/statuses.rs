//! Payment statuses (only ever moved forward, by rank of the lifecycle's transitions)
//! and reconciliation exceptions.

use super::*;

/// Each payment status with its rank: its distance from INITIATED along the lifecycle's
/// legal transitions ([`transition`]), found breadth-first from "no payment yet". A
/// stored status is only ever replaced by one of the same or a higher rank (INITIATED 0,
/// AUTHORIZED and DECLINED 1, the statuses after an authorization 2, a chargeback decided
/// 3) or along a legal transition ([`BACKWARD_TRANSITIONS`]): a replay that re-sends
/// INITIATED or AUTHORIZED never moves a later status back. Statuses of the same rank can
/// replace each other (a replay re-sending CAPTURED after REFUNDED does, until it re-sends
/// REFUNDED too). A status no transition reaches has no rank.
pub fn status_ranks() -> Vec<(PaymentStatus, i32)> {
    let mut ranks: Vec<(PaymentStatus, i32)> = Vec::new();
    let mut level: Vec<Option<PaymentStatus>> = vec![None];
    let mut rank = 0;
    while !level.is_empty() {
        let mut next = Vec::new();
        for &from in &level {
            for to in PaymentStatus::ALL {
                if transition(from, to).is_ok() && !ranks.iter().any(|&(s, _)| s == to) {
                    ranks.push((to, rank));
                    next.push(Some(to));
                }
            }
        }
        level = next;
        rank += 1;
    }
    ranks
}

/// [`status_ranks`] as the two arrays the payments upsert binds: names and ranks.
pub(super) static STATUS_RANKS: LazyLock<(Vec<&'static str>, Vec<i32>)> = LazyLock::new(|| {
    status_ranks()
        .into_iter()
        .map(|(status, rank)| (status.as_str(), rank))
        .unzip()
});

/// The legal transitions that go to a lower or equal rank ([`status_ranks`]): from and
/// to names. The lifecycle has cycles (more captures after a settlement, a refund of
/// everything captured so far and then another capture, a second dispute after a win), so
/// rank alone would refuse them.
pub(super) static BACKWARD_TRANSITIONS: LazyLock<(Vec<&'static str>, Vec<&'static str>)> =
    LazyLock::new(|| {
        let ranks = status_ranks();
        let rank = |status: PaymentStatus| {
            ranks
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(i32::MAX, |(_, r)| *r)
        };
        LEGAL_TRANSITIONS
            .iter()
            .filter_map(|(from, to)| Some(((*from)?, *to)))
            .filter(|(from, to)| rank(*to) <= rank(*from))
            .map(|(from, to)| (from.as_str(), to.as_str()))
            .unzip()
    });

/// Upserts the latest status per payment (records of one payment arrive in order);
/// returns how many status records that covered. A status never moves back: the stored
/// one is replaced only by one of the same or a higher [`status_ranks`] rank.
pub(super) async fn write_statuses(
    transaction: &mut Transaction<'static, Postgres>,
    statuses: &[&PaymentStatusChanged],
) -> Result<u64> {
    let mut latest: BTreeMap<&str, &PaymentStatusChanged> = BTreeMap::new();
    for &status in statuses {
        latest.insert(&status.payment_id, status);
    }
    if latest.is_empty() {
        return Ok(0);
    }
    let (mut pid, mut mid, mut st, mut amt, mut cur, mut evt, mut at) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for s in latest.values() {
        pid.push(s.payment_id.clone());
        mid.push(s.merchant_id.clone());
        st.push(s.status.as_str().to_string());
        amt.push(s.amount_minor);
        cur.push(s.currency.clone());
        evt.push(s.caused_by_event_id.clone());
        at.push(s.occurred_at);
    }
    sqlx::query(
        "INSERT INTO payments
            (payment_id, merchant_id, status, amount_minor, currency, last_event_id, updated_at)
         SELECT pid, mid, st, amt, cur, evt, to_timestamp(at_ms / 1000.0)
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[])
              AS t(pid, mid, st, amt, cur, evt, at_ms)
         ON CONFLICT (payment_id) DO UPDATE SET
            status = EXCLUDED.status,
            last_event_id = EXCLUDED.last_event_id,
            updated_at = EXCLUDED.updated_at
         -- statuses only move forward: $9[i] is the rank of status $8[i] (status_ranks),
         -- or along a legal transition ($10[i] → $11[i]) that goes back in rank (a
         -- capture after a settlement, a second dispute after a win)
         WHERE ($9::int4[])[array_position($8::text[], EXCLUDED.status)]
            >= ($9::int4[])[array_position($8::text[], payments.status)]
            OR EXISTS (SELECT 1 FROM UNNEST($10::text[], $11::text[]) AS e(from_status, to_status)
                       WHERE e.from_status = payments.status AND e.to_status = EXCLUDED.status)",
    )
    .bind(&pid)
    .bind(&mid)
    .bind(&st)
    .bind(&amt)
    .bind(&cur)
    .bind(&evt)
    .bind(&at)
    .bind(&STATUS_RANKS.0)
    .bind(&STATUS_RANKS.1)
    .bind(&BACKWARD_TRANSITIONS.0)
    .bind(&BACKWARD_TRANSITIONS.1)
    .execute(&mut **transaction)
    .await
    .map_err(db("upserting payments"))?;
    Ok(statuses.len() as u64)
}

/// Inserts reconciliation exceptions, once per id (= once per payment and kind); returns
/// how many were new.
pub(super) async fn write_exceptions(
    transaction: &mut Transaction<'static, Postgres>,
    exceptions: &[(&ReconciliationException, Uuid, &Origin)],
) -> Result<u64> {
    if exceptions.is_empty() {
        return Ok(0);
    }
    let mut rows = ExceptionRows::default();
    for (exception, id, origin) in exceptions {
        rows.push(exception, *id, origin);
    }
    let written = sqlx::query(
        "INSERT INTO reconciliation_exceptions
            (id, kind, payment_id, expected_amount_minor, actual_amount_minor, currency,
             detected_at, source_topic, source_partition, source_offset)
         SELECT id, kind, pid, expected, actual, cur, to_timestamp(at_ms / 1000.0),
                topic, part, off
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::int8[],
                     $6::text[], $7::int8[], $8::text[], $9::int4[], $10::int8[])
              AS t(id, kind, pid, expected, actual, cur, at_ms, topic, part, off)
         ON CONFLICT DO NOTHING",
    )
    .bind(&rows.id)
    .bind(&rows.kind)
    .bind(&rows.payment_id)
    .bind(&rows.expected)
    .bind(&rows.actual)
    .bind(&rows.currency)
    .bind(&rows.detected_at)
    .bind(&rows.topic)
    .bind(&rows.partition)
    .bind(&rows.offset)
    .execute(&mut **transaction)
    .await
    .map_err(db("inserting reconciliation exceptions"))?;
    Ok(written.rows_affected())
}

/// Column arrays of reconciliation exceptions for one `UNNEST` insert.
#[derive(Default)]
struct ExceptionRows {
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    payment_id: Vec<String>,
    expected: Vec<Option<i64>>,
    actual: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    detected_at: Vec<i64>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

impl ExceptionRows {
    fn push(&mut self, exception: &ReconciliationException, id: Uuid, origin: &Origin) {
        self.id.push(id);
        self.kind.push(exception.kind.as_str());
        self.payment_id.push(exception.payment_id.clone());
        self.expected.push(exception.expected_amount_minor);
        self.actual.push(exception.actual_amount_minor);
        self.currency.push(exception.currency.clone());
        self.detected_at.push(exception.detected_at);
        self.topic.push(origin.topic.clone());
        self.partition.push(origin.partition);
        self.offset.push(origin.offset);
    }
}
