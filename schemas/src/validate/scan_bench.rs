//! Micro-benchmark of the card-number and credential scan, before ([`super::reference`])
//! and after, over the string fields of realistic events. Ignored by default; run it in
//! an optimised build, e.g.
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo test --workspace --lib -- --ignored --nocapture scan_micro_benchmark`
//! (the workspace's own crates at opt-level 3, like the dependencies in the dev profile;
//! debug assertions and overflow checks stay on).
//!
//! It times the scan functions alone (no decoding, no other check) on one thread, over
//! 64 events with random UUIDs shaped like the test traffic's (`testkit`), each case
//! repeated for at least 100 ms, best of 5 rounds, and prints nanoseconds per field.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{check_no_sensitive, credential_ranges, pan_ranges, reference};

const EVENTS: usize = 64;

/// A free-text decline reason with a URL, a query string, a reference and a time.
const REASON: &str = "Refused by the issuer: do not honour (05). The customer may retry \
     with another card or contact their bank; see \
     https://status.example.com/declines?code=05&ref=20240611-0042 for details. \
     Attempt 2 of 3, 2024-06-11T10:42:07Z.";

/// Random UUIDs (fixed seed) that hold no card-number-like run, as the test traffic's.
fn uuids(count: usize) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        // SplitMix64.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    std::iter::from_fn(|| {
        let random = (u128::from(next()) << 64 | u128::from(next())).to_le_bytes();
        Some(
            uuid::Builder::from_random_bytes(random)
                .into_uuid()
                .to_string(),
        )
    })
    .filter(|id| !reference::contains_pan(id))
    .take(count)
    .collect()
}

/// The string fields of `EVENTS` `PaymentInitiated` events: UUIDs, an idempotency key, a
/// payment method token and a PSP name.
fn payment_initiated() -> Vec<[(&'static str, String); 7]> {
    let ids = uuids(6 * EVENTS);
    ids.chunks_exact(6)
        .map(|ids| {
            [
                ("event_id", ids[0].clone()),
                ("idempotency_key", format!("idem-{}", ids[1])),
                ("payment_id", ids[2].clone()),
                ("merchant_id", ids[3].clone()),
                ("customer_id", ids[4].clone()),
                ("payment_method_token", format!("pm_{}", &ids[5][..18])),
                ("psp", "adyen".to_string()),
            ]
        })
        .collect()
}

/// The string fields of `EVENTS` `AuthFailed` events with the free-text [`REASON`].
fn auth_failed() -> Vec<[(&'static str, String); 5]> {
    let ids = uuids(3 * EVENTS);
    ids.chunks_exact(3)
        .map(|ids| {
            [
                ("event_id", ids[0].clone()),
                ("payment_id", ids[1].clone()),
                ("psp_reference", format!("psp_{}", &ids[2][..12])),
                ("decline_code", "05".to_string()),
                ("reason", REASON.to_string()),
            ]
        })
        .collect()
}

/// Nanoseconds per call of `f`, best of 5 rounds of at least 100 ms each.
fn ns_per_call(mut f: impl FnMut()) -> f64 {
    let mut calls_per_round = 16u32;
    loop {
        let started = Instant::now();
        for _ in 0..calls_per_round {
            f();
        }
        if started.elapsed() >= Duration::from_millis(100) {
            break;
        }
        calls_per_round *= 2;
    }
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls_per_round {
                f();
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(calls_per_round)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Times `scan` with `before` and `after` over `events` and prints ns per field.
fn report<const N: usize>(
    case: &str,
    events: &[[(&'static str, &str); N]],
    before: fn(&[(&'static str, &str)]),
    after: fn(&[(&'static str, &str)]),
) {
    let fields = (events.len() * N) as f64;
    let time = |scan: fn(&[(&'static str, &str)])| {
        ns_per_call(|| {
            for event in black_box(events) {
                scan(event);
            }
        }) / fields
    };
    let before = time(before);
    let after = time(after);
    println!(
        "{case:<58} {before:>8.1} {after:>8.1} {:>8.1}x",
        before / after
    );
}

fn borrowed<'a, const N: usize>(
    events: &'a [[(&'static str, String); N]],
) -> Vec<[(&'static str, &'a str); N]> {
    events
        .iter()
        .map(|event| {
            event
                .each_ref()
                .map(|(name, value)| (*name, value.as_str()))
        })
        .collect()
}

#[test]
#[ignore = "micro-benchmark: run explicitly in an optimised build"]
fn scan_micro_benchmark() {
    let initiated = payment_initiated();
    let initiated = borrowed(&initiated);
    let failed = auth_failed();
    let failed = borrowed(&failed);
    for event in &initiated {
        assert_eq!(check_no_sensitive(event), Ok(()));
    }
    for event in &failed {
        assert_eq!(check_no_sensitive(event), Ok(()));
    }
    let uuids: Vec<[(&'static str, &str); 1]> = initiated.iter().map(|event| [event[0]]).collect();
    let reasons: Vec<[(&'static str, &str); 1]> = failed.iter().map(|event| [event[4]]).collect();

    if cfg!(debug_assertions) {
        println!("(debug assertions and overflow checks on)");
    }
    println!(
        "{:<58} {:>8} {:>8} {:>9}",
        "ns per field", "before", "after", "speed-up"
    );
    fn check_before(fields: &[(&'static str, &str)]) {
        black_box(reference::check_no_sensitive(black_box(fields))).ok();
    }
    fn check_after(fields: &[(&'static str, &str)]) {
        black_box(check_no_sensitive(black_box(fields))).ok();
    }
    // The dead-letter path: both range lists of every field.
    fn ranges_before(fields: &[(&'static str, &str)]) {
        for (_, value) in black_box(fields) {
            black_box(reference::pan_ranges(value.as_bytes()));
            black_box(reference::credential_ranges(value.as_bytes()));
        }
    }
    fn ranges_after(fields: &[(&'static str, &str)]) {
        for (_, value) in black_box(fields) {
            black_box(pan_ranges(value.as_bytes()));
            black_box(credential_ranges(value.as_bytes()));
        }
    }
    report(
        "validation check, PaymentInitiated (7 fields)",
        &initiated,
        check_before,
        check_after,
    );
    report(
        "validation check, AuthFailed (5 fields, free-text reason)",
        &failed,
        check_before,
        check_after,
    );
    report(
        "validation check, a UUID",
        &uuids,
        check_before,
        check_after,
    );
    report(
        &format!("validation check, the reason ({} bytes)", REASON.len()),
        &reasons,
        check_before,
        check_after,
    );
    report(
        "ranges (dead letters), PaymentInitiated (7 fields)",
        &initiated,
        ranges_before,
        ranges_after,
    );
    report(
        "ranges (dead letters), AuthFailed (5 fields)",
        &failed,
        ranges_before,
        ranges_after,
    );
}
