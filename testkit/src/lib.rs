//! Test support for paystream: a realistic load and the exact ledger it must produce.
//!
//! [`traffic`] plans a deterministic (seeded) stream of payment events — duplicate
//! retries, idempotency-key conflicts, declines, settlements, out-of-order arrival,
//! reconciliation mismatches, orphans and malformed records — together with the
//! [`traffic::ExpectedOutcome`] a correct pipeline must reach on it, computed from the
//! plan alone. The end-to-end and crash tests (`integration/`) and the demo
//! (`scripts/demo`: `paystream produce --expect-out`, then `paystream ledger verify
//! --expect`) drive the pipeline with it and compare exactly, and a benchmark gets a
//! known load from it; see `docs/architecture.md`.

pub mod traffic;
