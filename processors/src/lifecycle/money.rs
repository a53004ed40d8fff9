//! The money of one payment after its authorization: running totals in minor units of
//! the payment's currency, and the guard every money movement passes before it is
//! applied. Pure — no store, no output — so that the rules can be read, and
//! property-tested, on their own.
//!
//! | total | what it sums |
//! |---|---|
//! | `authorized_minor` (A) | the authorization |
//! | `captured_minor` (C) | captures (with automatic capture, the authorization itself) |
//! | `released_minor` (V) | the part of the authorization released uncaptured: a void, or the rest at a final capture |
//! | `settled_minor` (S) | settled gross amounts |
//! | `refunded_minor` (R) | refunds |
//! | `disputed_minor` (D) | chargebacks withdrawn and not decided yet |
//! | `charged_back_minor` (L) | chargebacks lost |
//! | `reinstated_minor` | chargebacks won (their amount came back) |
//!
//! Invariants after every applied movement: `C + V ≤ A`; `R + D + L ≤ C`. Sources for
//! each guard: PPRO and Stripe (captures and voids never exceed the authorization, a
//! voided authorization cannot be captured), Stripe (refunds never exceed the charge;
//! no dispute on a fully refunded charge); see docs/architecture.md, "Payment lifecycle
//! and ledger".

use paystream_schemas::{CaptureMode, PaymentStatus};

/// One movement of a payment's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// `amount_minor` captured; a final capture releases what is left of the
    /// authorization.
    Capture {
        amount_minor: i64,
        final_capture: bool,
    },
    /// The authorization is voided: what is left of it is released.
    Void,
    /// `amount_minor` refunded.
    Refund { amount_minor: i64 },
    /// A chargeback withdrew `amount_minor`.
    ChargebackOpened { amount_minor: i64 },
    /// An open chargeback of `amount_minor` was won: its amount is reinstated.
    ChargebackWon { amount_minor: i64 },
    /// A chargeback of `amount_minor` was lost; `after_win`: it had been won before (a
    /// second chargeback), so its amount is withdrawn again.
    ChargebackLost { amount_minor: i64, after_win: bool },
}

/// Why a movement cannot be applied. Each leaves the totals as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A capture above what is left of the authorization.
    #[error("capture of {attempted_minor} exceeds the {remaining_minor} left of the authorization")]
    CaptureExceedsAuthorization {
        remaining_minor: i64,
        attempted_minor: i64,
    },
    /// A capture or void after the authorization was closed (voided, captured in full or
    /// finally captured).
    #[error("the authorization is closed: nothing is left to capture or void")]
    AuthorizationClosed,
    /// A refund or chargeback of a payment with nothing captured.
    #[error("nothing was captured")]
    NothingCaptured,
    /// A refund above what was captured minus what was refunded or charged back.
    #[error("refund of {attempted_minor} exceeds the {refundable_minor} still refundable")]
    RefundExceedsCaptured {
        refundable_minor: i64,
        attempted_minor: i64,
    },
    /// A chargeback of a payment refunded in full.
    #[error("the payment was refunded in full")]
    FullyRefunded,
    /// A chargeback above what was captured minus what was refunded or charged back.
    #[error("chargeback of {attempted_minor} exceeds the {chargeable_minor} still chargeable")]
    ChargebackExceedsCaptured {
        chargeable_minor: i64,
        attempted_minor: i64,
    },
    /// A chargeback decided (won, or lost) that is not open.
    #[error("no open chargeback of {amount_minor}")]
    ChargebackNotOpen { amount_minor: i64 },
    /// An amount that is not positive.
    #[error("amount {amount_minor} is not positive")]
    NotPositive { amount_minor: i64 },
}

/// The running totals of one payment, minor units of its currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoneyTotals {
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub released_minor: i64,
    pub settled_minor: i64,
    pub refunded_minor: i64,
    pub disputed_minor: i64,
    pub charged_back_minor: i64,
    pub reinstated_minor: i64,
}

impl MoneyTotals {
    /// The totals right after an authorization of `amount_minor`: with automatic
    /// capture it is captured too.
    pub fn authorized(amount_minor: i64, mode: CaptureMode) -> MoneyTotals {
        MoneyTotals {
            authorized_minor: amount_minor,
            captured_minor: match mode {
                CaptureMode::Automatic => amount_minor,
                CaptureMode::Manual => 0,
            },
            ..MoneyTotals::default()
        }
    }

    /// What is left of the authorization to capture or release.
    pub fn open_authorization_minor(&self) -> i64 {
        self.authorized_minor - self.captured_minor - self.released_minor
    }

    /// What may still be refunded or charged back: captured minus refunded, disputed
    /// and charged back.
    pub fn refundable_minor(&self) -> i64 {
        self.captured_minor - self.refunded_minor - self.disputed_minor - self.charged_back_minor
    }

    /// Applies `movement`. Returns the amount it released from the authorization (a
    /// void, or the rest at a final capture), which the ledger books as a release of
    /// the hold.
    ///
    /// # Errors
    /// [`Refusal`] when the movement breaks a guard; the totals are unchanged.
    pub fn apply(&mut self, movement: Movement) -> Result<i64, Refusal> {
        let positive = |amount_minor: i64| {
            if amount_minor > 0 {
                Ok(())
            } else {
                Err(Refusal::NotPositive { amount_minor })
            }
        };
        match movement {
            Movement::Capture {
                amount_minor,
                final_capture,
            } => {
                positive(amount_minor)?;
                let remaining_minor = self.open_authorization_minor();
                if remaining_minor == 0 {
                    return Err(Refusal::AuthorizationClosed);
                }
                if amount_minor > remaining_minor {
                    return Err(Refusal::CaptureExceedsAuthorization {
                        remaining_minor,
                        attempted_minor: amount_minor,
                    });
                }
                self.captured_minor += amount_minor;
                let released = if final_capture {
                    self.open_authorization_minor()
                } else {
                    0
                };
                self.released_minor += released;
                Ok(released)
            }
            Movement::Void => {
                let released = self.open_authorization_minor();
                if released == 0 {
                    return Err(Refusal::AuthorizationClosed);
                }
                self.released_minor += released;
                Ok(released)
            }
            Movement::Refund { amount_minor } => {
                positive(amount_minor)?;
                if self.captured_minor == 0 {
                    return Err(Refusal::NothingCaptured);
                }
                let refundable_minor = self.refundable_minor();
                if amount_minor > refundable_minor {
                    return Err(Refusal::RefundExceedsCaptured {
                        refundable_minor,
                        attempted_minor: amount_minor,
                    });
                }
                self.refunded_minor += amount_minor;
                Ok(0)
            }
            Movement::ChargebackOpened { amount_minor } => {
                positive(amount_minor)?;
                self.check_chargeable(amount_minor)?;
                self.disputed_minor += amount_minor;
                Ok(0)
            }
            Movement::ChargebackWon { amount_minor } => {
                positive(amount_minor)?;
                if amount_minor > self.disputed_minor {
                    return Err(Refusal::ChargebackNotOpen { amount_minor });
                }
                self.disputed_minor -= amount_minor;
                self.reinstated_minor += amount_minor;
                Ok(0)
            }
            Movement::ChargebackLost {
                amount_minor,
                after_win,
            } => {
                positive(amount_minor)?;
                if after_win {
                    if amount_minor > self.reinstated_minor {
                        return Err(Refusal::ChargebackNotOpen { amount_minor });
                    }
                    self.check_chargeable(amount_minor)?;
                    self.reinstated_minor -= amount_minor;
                } else {
                    if amount_minor > self.disputed_minor {
                        return Err(Refusal::ChargebackNotOpen { amount_minor });
                    }
                    self.disputed_minor -= amount_minor;
                }
                self.charged_back_minor += amount_minor;
                Ok(0)
            }
        }
    }

    fn check_chargeable(&self, amount_minor: i64) -> Result<(), Refusal> {
        if self.captured_minor == 0 {
            return Err(Refusal::NothingCaptured);
        }
        if self.refunded_minor >= self.captured_minor {
            return Err(Refusal::FullyRefunded);
        }
        let chargeable_minor = self.refundable_minor();
        if amount_minor > chargeable_minor {
            return Err(Refusal::ChargebackExceedsCaptured {
                chargeable_minor,
                attempted_minor: amount_minor,
            });
        }
        Ok(())
    }

    /// The status the totals show, for a payment authorized with capture `mode`: the
    /// latest stage of its money wins — a chargeback lost, open or won, then refunds,
    /// then settlement, then captures and voids. An automatic capture shows AUTHORIZED
    /// (authorized and captured at once, as before captures existed).
    pub fn status(&self, mode: CaptureMode) -> PaymentStatus {
        let captured = self.captured_minor;
        if self.charged_back_minor > 0 {
            PaymentStatus::ChargebackLost
        } else if self.disputed_minor > 0 {
            PaymentStatus::Disputed
        } else if self.reinstated_minor > 0 {
            PaymentStatus::ChargebackWon
        } else if captured > 0 && self.refunded_minor >= captured {
            PaymentStatus::Refunded
        } else if self.refunded_minor > 0 {
            PaymentStatus::PartiallyRefunded
        } else if captured > 0 && self.settled_minor >= captured {
            PaymentStatus::Settled
        } else if captured == 0 && self.released_minor > 0 {
            PaymentStatus::Voided
        } else if mode == CaptureMode::Automatic || captured == 0 {
            PaymentStatus::Authorized
        } else if self.open_authorization_minor() == 0 {
            PaymentStatus::Captured
        } else {
            PaymentStatus::PartiallyCaptured
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every status change the totals can make, found by applying every sequence of up to
    /// `depth` movements (small amounts, and settlements of what is captured) to an
    /// authorization of 4 under each capture mode.
    pub(crate) fn reachable_status_changes(
        depth: usize,
    ) -> std::collections::HashSet<(PaymentStatus, PaymentStatus)> {
        let mut movements = vec![Movement::Void];
        for amount_minor in 1..=4 {
            for final_capture in [false, true] {
                movements.push(Movement::Capture {
                    amount_minor,
                    final_capture,
                });
            }
            movements.push(Movement::Refund { amount_minor });
            movements.push(Movement::ChargebackOpened { amount_minor });
            movements.push(Movement::ChargebackWon { amount_minor });
            for after_win in [false, true] {
                movements.push(Movement::ChargebackLost {
                    amount_minor,
                    after_win,
                });
            }
        }
        let mut changes = std::collections::HashSet::new();
        for mode in CaptureMode::ALL {
            let mut frontier = vec![MoneyTotals::authorized(4, mode)];
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..depth {
                let mut next = Vec::new();
                for totals in frontier {
                    let from = totals.status(mode);
                    let mut successors: Vec<MoneyTotals> = movements
                        .iter()
                        .filter_map(|m| {
                            let mut t = totals;
                            t.apply(*m).ok().map(|_| t)
                        })
                        .collect();
                    // A settlement of what is captured and not settled yet.
                    if totals.captured_minor > totals.settled_minor {
                        let mut t = totals;
                        t.settled_minor = t.captured_minor;
                        successors.push(t);
                    }
                    for t in successors {
                        let to = t.status(mode);
                        if to != from {
                            changes.insert((from, to));
                        }
                        let key = format!("{t:?}");
                        if seen.insert(key) {
                            next.push(t);
                        }
                    }
                }
                frontier = next;
            }
        }
        changes
    }

    fn capture(amount_minor: i64, final_capture: bool) -> Movement {
        Movement::Capture {
            amount_minor,
            final_capture,
        }
    }

    #[test]
    fn partial_captures_up_to_the_authorization_then_the_rest_is_released() {
        let mut money = MoneyTotals::authorized(1_000, CaptureMode::Manual);
        assert_eq!(money.status(CaptureMode::Manual), PaymentStatus::Authorized);
        assert_eq!(money.apply(capture(300, false)), Ok(0));
        assert_eq!(
            money.status(CaptureMode::Manual),
            PaymentStatus::PartiallyCaptured
        );
        assert_eq!(
            money.apply(capture(800, false)),
            Err(Refusal::CaptureExceedsAuthorization {
                remaining_minor: 700,
                attempted_minor: 800
            })
        );
        assert_eq!(
            money.apply(capture(200, true)),
            Ok(500),
            "the rest released"
        );
        assert_eq!(money.status(CaptureMode::Manual), PaymentStatus::Captured);
        assert_eq!(
            money.apply(capture(1, false)),
            Err(Refusal::AuthorizationClosed)
        );
        assert_eq!(
            money.apply(Movement::Void),
            Err(Refusal::AuthorizationClosed)
        );
    }

    #[test]
    fn a_void_releases_what_is_left_and_closes_the_authorization() {
        let mut money = MoneyTotals::authorized(1_000, CaptureMode::Manual);
        assert_eq!(money.apply(Movement::Void), Ok(1_000));
        assert_eq!(money.status(CaptureMode::Manual), PaymentStatus::Voided);
        assert_eq!(
            money.apply(capture(1, false)),
            Err(Refusal::AuthorizationClosed)
        );
        assert_eq!(
            money.apply(Movement::Refund { amount_minor: 1 }),
            Err(Refusal::NothingCaptured)
        );

        let mut money = MoneyTotals::authorized(1_000, CaptureMode::Manual);
        money.apply(capture(400, false)).unwrap();
        assert_eq!(
            money.apply(Movement::Void),
            Ok(600),
            "after a partial capture"
        );
        assert_eq!(money.status(CaptureMode::Manual), PaymentStatus::Captured);
    }

    #[test]
    fn refunds_never_exceed_what_was_captured() {
        let mut money = MoneyTotals::authorized(1_000, CaptureMode::Automatic);
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::Authorized
        );
        money.settled_minor = 1_000;
        assert_eq!(money.status(CaptureMode::Automatic), PaymentStatus::Settled);
        money.apply(Movement::Refund { amount_minor: 400 }).unwrap();
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::PartiallyRefunded
        );
        assert_eq!(
            money.apply(Movement::Refund { amount_minor: 700 }),
            Err(Refusal::RefundExceedsCaptured {
                refundable_minor: 600,
                attempted_minor: 700
            })
        );
        money.apply(Movement::Refund { amount_minor: 600 }).unwrap();
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::Refunded
        );
        assert_eq!(
            money.apply(Movement::ChargebackOpened { amount_minor: 100 }),
            Err(Refusal::FullyRefunded)
        );
    }

    #[test]
    fn a_chargeback_opens_can_be_won_then_lost_and_never_exceeds_the_captured_rest() {
        let mut money = MoneyTotals::authorized(1_000, CaptureMode::Automatic);
        money.apply(Movement::Refund { amount_minor: 300 }).unwrap();
        assert_eq!(
            money.apply(Movement::ChargebackOpened { amount_minor: 800 }),
            Err(Refusal::ChargebackExceedsCaptured {
                chargeable_minor: 700,
                attempted_minor: 800
            })
        );
        money
            .apply(Movement::ChargebackOpened { amount_minor: 700 })
            .unwrap();
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::Disputed
        );
        assert_eq!(
            money.apply(Movement::Refund { amount_minor: 1 }),
            Err(Refusal::RefundExceedsCaptured {
                refundable_minor: 0,
                attempted_minor: 1
            }),
            "disputed money is not refundable"
        );
        money
            .apply(Movement::ChargebackWon { amount_minor: 700 })
            .unwrap();
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::ChargebackWon
        );
        money
            .apply(Movement::ChargebackLost {
                amount_minor: 700,
                after_win: true,
            })
            .unwrap();
        assert_eq!(
            money.status(CaptureMode::Automatic),
            PaymentStatus::ChargebackLost
        );
        assert_eq!(
            money.apply(Movement::ChargebackWon { amount_minor: 700 }),
            Err(Refusal::ChargebackNotOpen { amount_minor: 700 })
        );
    }

    fn movement() -> impl Strategy<Value = Movement> {
        let amount = 1i64..1_500;
        prop_oneof![
            (amount.clone(), any::<bool>()).prop_map(|(a, f)| capture(a, f)),
            Just(Movement::Void),
            amount
                .clone()
                .prop_map(|amount_minor| Movement::Refund { amount_minor }),
            amount
                .clone()
                .prop_map(|amount_minor| Movement::ChargebackOpened { amount_minor }),
            amount
                .clone()
                .prop_map(|amount_minor| Movement::ChargebackWon { amount_minor }),
            (amount, any::<bool>()).prop_map(|(amount_minor, after_win)| {
                Movement::ChargebackLost {
                    amount_minor,
                    after_win,
                }
            }),
        ]
    }

    proptest! {
        /// Whatever movements arrive, the invariants hold after each, and a refused
        /// movement changes nothing.
        #[test]
        fn the_invariants_hold_after_any_sequence_of_movements(
            authorized in 1i64..1_000,
            manual in any::<bool>(),
            movements in proptest::collection::vec(movement(), 0..30),
        ) {
            let mode = if manual { CaptureMode::Manual } else { CaptureMode::Automatic };
            let mut money = MoneyTotals::authorized(authorized, mode);
            for movement in movements {
                let before = money;
                match money.apply(movement) {
                    Ok(released) => prop_assert!(released >= 0),
                    Err(_) => prop_assert_eq!(money, before),
                }
                prop_assert!(money.captured_minor + money.released_minor <= money.authorized_minor);
                prop_assert!(
                    money.refunded_minor + money.disputed_minor + money.charged_back_minor
                        <= money.captured_minor
                );
                for total in [money.captured_minor, money.released_minor, money.refunded_minor,
                              money.disputed_minor, money.charged_back_minor, money.reinstated_minor] {
                    prop_assert!(total >= 0);
                }
            }
        }
    }
}
