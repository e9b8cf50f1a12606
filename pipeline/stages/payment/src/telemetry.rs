//! The payment stage's metrics and the log lines that go with them, in one place. A
//! dossier's or confirmation's outcome is counted at the end of a successful batch (the
//! bills are stored by then), so a retried batch does not count twice. Labels: outcome
//! only, never a bill reference or dossier id.

use metrics::Unit;

pub const PAYMENT_DOSSIERS_TOTAL: &str = "motcua_payment_dossiers_total";
pub const PAYMENT_DUPLICATE_PAYMENTS_TOTAL: &str = "motcua_payment_duplicate_payments_total";
pub const PAYMENT_FAILURES_TOTAL: &str = "motcua_payment_failures_total";
pub const PAYMENT_EXPIRED_TOTAL: &str = "motcua_payment_expired_total";

/// Registers every payment metric with its unit and description.
pub fn describe() {
    metrics::describe_counter!(
        PAYMENT_DOSSIERS_TOTAL,
        Unit::Count,
        "Verified dossiers, by outcome (free: nothing to pay, billed: a bill was issued, ended: withdrawn or stopped before billing)"
    );
    metrics::describe_counter!(
        PAYMENT_DUPLICATE_PAYMENTS_TOTAL,
        Unit::Count,
        "Payments to refund: a second payment of a paid bill, or a payment for a dossier withdrawn or stopped meanwhile"
    );
    metrics::describe_counter!(
        PAYMENT_FAILURES_TOTAL,
        Unit::Count,
        "Gateway confirmations of a failed or insufficient payment"
    );
    metrics::describe_counter!(
        PAYMENT_EXPIRED_TOTAL,
        Unit::Count,
        "Bills expired unpaid (announced and marked)"
    );
}

/// What one input of a batch came to; [`Counted::emit`] logs and counts it.
#[derive(Debug)]
pub(crate) enum Counted {
    /// A dossier that owes nothing.
    Free,
    /// A dossier that got a bill.
    Billed,
    /// A second transaction for a paid bill: refund it.
    DuplicatePayment {
        bill_reference: String,
        tx: String,
    },
    PaymentFailed,
    /// A dossier withdrawn or stopped before it was billed: no bill.
    Ended,
    /// A payment for a dossier withdrawn or stopped meanwhile: refund it.
    PaidAfterEnd {
        bill_reference: String,
        tx: String,
    },
}

impl Counted {
    pub(crate) fn emit(&self) {
        match self {
            Counted::Free => metrics::counter!(PAYMENT_DOSSIERS_TOTAL, "outcome" => "free").increment(1),
            Counted::Billed => metrics::counter!(PAYMENT_DOSSIERS_TOTAL, "outcome" => "billed").increment(1),
            Counted::DuplicatePayment { bill_reference, tx } => {
                metrics::counter!(PAYMENT_DUPLICATE_PAYMENTS_TOTAL).increment(1);
                tracing::warn!(bill = %bill_reference, %tx, "second payment of a paid bill: refund it");
            }
            Counted::PaymentFailed => metrics::counter!(PAYMENT_FAILURES_TOTAL).increment(1),
            Counted::Ended => metrics::counter!(PAYMENT_DOSSIERS_TOTAL, "outcome" => "ended").increment(1),
            Counted::PaidAfterEnd { bill_reference, tx } => {
                metrics::counter!(PAYMENT_DUPLICATE_PAYMENTS_TOTAL).increment(1);
                tracing::warn!(bill = %bill_reference, %tx, "payment for a withdrawn or stopped dossier: refund it");
            }
        }
    }
}

/// A bill expired and its expiry was announced (or its dossier had ended first).
pub fn bill_expired() {
    metrics::counter!(PAYMENT_EXPIRED_TOTAL).increment(1);
}
