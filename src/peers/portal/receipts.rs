//! What the portal remembers of each payment until its success token expires: enough for the
//! success page to say what was charged and the balance after, and to show it once.

use std::collections::HashMap;
use std::sync::Mutex;

/// One payment, as its success page tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Receipt {
    pub subscriber: String,
    pub amount: i64,
    /// The balance once this payment is in it; `None` without a policy engine.
    pub balance_after: Option<i64>,
    /// Billing has not applied the payment yet.
    pub pending: bool,
    pub currency: String,
    pub minor_units: u32,
    /// When its success token expires (seconds since the Unix epoch).
    pub expires: u64,
}

/// Why a receipt cannot be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Missing {
    /// Never recorded here (another portal, a restart, a made-up nonce).
    Unknown,
    /// Its success page was shown already.
    Shown,
}

struct Entry {
    receipt: Receipt,
    shown: bool,
}

/// Receipts by the payment's nonce.
#[derive(Default)]
pub(super) struct Receipts {
    by_nonce: Mutex<HashMap<String, Entry>>,
}

impl Receipts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are whole values; a panic elsewhere leaves none half-written.
        self.by_nonce.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a payment; a nonce already recorded (a double submit) keeps its first receipt,
    /// and whether it was shown. Forgets receipts whose token has expired.
    pub(super) fn record(&self, nonce: &str, receipt: Receipt, now: u64) {
        let mut map = self.lock();
        map.retain(|_, e| e.receipt.expires > now);
        map.entry(nonce.to_string()).or_insert(Entry {
            receipt,
            shown: false,
        });
    }

    /// The receipt of a nonce, marked shown: the second time it is [`Missing::Shown`].
    pub(super) fn show(&self, nonce: &str) -> Result<Receipt, Missing> {
        let mut map = self.lock();
        let entry = map.get_mut(nonce).ok_or(Missing::Unknown)?;
        if entry.shown {
            return Err(Missing::Shown);
        }
        entry.shown = true;
        Ok(entry.receipt.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(amount: i64, expires: u64) -> Receipt {
        Receipt {
            subscriber: "imsi-1".into(),
            amount,
            balance_after: Some(amount),
            pending: false,
            currency: String::new(),
            minor_units: 0,
            expires,
        }
    }

    #[test]
    fn a_receipt_is_shown_once_and_a_double_submit_keeps_the_first() {
        let r = Receipts::default();
        r.record("n1", receipt(10, 100), 0);
        r.record("n1", receipt(20, 100), 1);
        assert_eq!(r.show("n1").map(|r| r.amount), Ok(10));
        assert_eq!(r.show("n1"), Err(Missing::Shown));
        r.record("n1", receipt(10, 100), 2);
        assert_eq!(r.show("n1"), Err(Missing::Shown));
        assert_eq!(r.show("n2"), Err(Missing::Unknown));
    }

    #[test]
    fn expired_receipts_are_forgotten() {
        let r = Receipts::default();
        r.record("old", receipt(10, 100), 0);
        r.record("new", receipt(10, 300), 200);
        assert_eq!(r.show("old"), Err(Missing::Unknown));
        assert!(r.show("new").is_ok());
    }
}
