//! The crash test in CI: a smaller `integration/chaos` run (20k events, 5 SIGKILLs, one
//! pause of an instance past its transaction timeout, two instances in phase 2) on the
//! real stack. Fails on any lost or duplicated output record, any difference in the
//! PostgreSQL ledger, or an instance that exited on its own.

use std::process::Command;
use std::time::Duration;

use paystream_integration::output_within;

#[test]
fn kill_nine_loses_and_duplicates_nothing() {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_chaos")).args([
            "--events",
            "20000",
            "--kills",
            "5",
            "--instances",
            "2",
            "--seed",
            "1",
            "--stalls",
            "1",
        ]),
        // About a minute here; a hang fails with the chaos run's output.
        Duration::from_secs(900),
    )
    .expect("run the chaos binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("instances that exited on their own: 0"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(last, "lost=0 duplicated=0 postings_exact=yes", "{stdout}");
    assert!(output.status.success());
}
