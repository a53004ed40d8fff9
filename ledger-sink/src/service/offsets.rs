//! What a batch leaves besides its rows: the `sink_dead_letters` rows of the records set
//! aside and the consumed offsets, in the batch's transaction.

use super::*;

/// Records the batch's rejected records in `sink_dead_letters` (a record dead-lettered
/// before, by a batch whose commit outcome was unknown, keeps its first row).
pub(super) async fn store_dead_letters(
    transaction: &mut Transaction<'static, Postgres>,
    batch: &Batch,
    rejections: &[Rejection],
) -> Result<()> {
    if rejections.is_empty() {
        return Ok(());
    }
    let (mut topic, mut partition, mut offset, mut reason, mut sqlstate, mut error) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for rejection in rejections {
        let origin = &batch.records[rejection.index].origin;
        topic.push(origin.topic.clone());
        partition.push(origin.partition);
        offset.push(origin.offset);
        reason.push(rejection.reason.as_str());
        sqlstate.push(rejection.sqlstate.clone());
        error.push(rejection.error.clone());
    }
    sqlx::query(
        "INSERT INTO sink_dead_letters (topic, partition, \"offset\", reason, sqlstate, error)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::text[], $5::text[],
                              $6::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&topic)
    .bind(&partition)
    .bind(&offset)
    .bind(&reason)
    .bind(&sqlstate)
    .bind(&error)
    .execute(&mut **transaction)
    .await
    .map_err(db("recording sink dead letters"))?;
    Ok(())
}

/// Stores the next offset per partition, never moving one back.
pub(super) async fn store_offsets(
    transaction: &mut Transaction<'static, Postgres>,
    next_offsets: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    if next_offsets.is_empty() {
        return Ok(());
    }
    let (mut t, mut p, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for ((topic, partition), offset) in next_offsets {
        t.push(topic.clone());
        p.push(*partition);
        o.push(*offset);
    }
    sqlx::query(
        "INSERT INTO sink_offsets (topic, partition, next_offset)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[])
         ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
         WHERE sink_offsets.next_offset < EXCLUDED.next_offset",
    )
    .bind(&t)
    .bind(&p)
    .bind(&o)
    .execute(&mut **transaction)
    .await
    .map_err(db("storing sink offsets"))?;
    Ok(())
}
