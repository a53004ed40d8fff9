//! Test support for paystream: a realistic load and the exact ledger it must produce.
//!
//! [`traffic`] plans a deterministic (seeded) stream of payment events — duplicate
//! retries, idempotency-key conflicts, declines, settlements, out-of-order arrival,
//! reconciliation mismatches, orphans and malformed records — together with the
//! [`traffic::ExpectedOutcome`] a correct pipeline must reach on it, computed from the
//! plan alone. It is for tests, the demo and benchmarks: the end-to-end and crash tests
//! (`integration/`) and the demo (`scripts/demo`: `paystream produce --expect-out`, then
//! `paystream ledger verify --expect`) drive the pipeline with it and compare exactly,
//! and the same seed gives a throughput measurement the same load; see
//! `docs/architecture.md`.

pub mod traffic;
