//! Bills: the payment stage's state.

use sqlx::Row;

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub bill_reference: String,
    pub dossier_id: String,
    pub amount_vnd: i64,
    pub status: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub gateway_tx: Option<String>,
    pub failures: i32,
    pub verified_payload: Vec<u8>,
}

/// What applying a confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// No bill has this reference.
    Unknown,
    /// The bill is now paid by this transaction (or was already, by the same one: a
    /// redelivery, whose events must be emitted again identically).
    Paid(Bill),
    /// Paid already by another transaction: a duplicate payment to refund, nothing to emit.
    AlreadyPaid(Bill),
    /// A failed attempt was counted; the bill stays pending.
    Failed(Bill),
}

const COLUMNS: &str = "bill_reference, dossier_id, amount_vnd, status, issued_at_ms, expires_at_ms, paid_at_ms, gateway_tx, failures, verified_payload";

fn bill<R: Row>(r: &R) -> Bill
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i32: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Bill {
        bill_reference: r.get("bill_reference"),
        dossier_id: r.get("dossier_id"),
        amount_vnd: r.get("amount_vnd"),
        status: r.get("status"),
        issued_at_ms: r.get("issued_at_ms"),
        expires_at_ms: r.get("expires_at_ms"),
        paid_at_ms: r.get("paid_at_ms"),
        gateway_tx: r.get("gateway_tx"),
        failures: r.get("failures"),
        verified_payload: r.get("verified_payload"),
    }
}

impl Store {
    /// Issues a bill (idempotent: a dossier billed before keeps its first bill, returned).
    pub async fn issue_bill(&self, b: &Bill) -> Result<Bill> {
        let mut stored = self.issue_bills(std::slice::from_ref(b)).await?;
        stored.pop().ok_or_else(|| sqlx::Error::RowNotFound.into())
    }

    /// Issues a batch's bills in one transaction, a few statements in all; returns each
    /// dossier's stored bill, in the order asked (idempotent like [`Store::issue_bill`]: a
    /// dossier billed before, or twice in the batch, keeps its first bill).
    pub async fn issue_bills(&self, bills: &[Bill]) -> Result<Vec<Bill>> {
        if bills.is_empty() {
            return Ok(Vec::new());
        }
        let mut stored: std::collections::HashMap<String, Bill> = std::collections::HashMap::with_capacity(bills.len());
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let column = |f: fn(&Bill) -> &str| bills.iter().map(f).collect::<Vec<_>>();
                let ints = |f: fn(&Bill) -> i64| bills.iter().map(f).collect::<Vec<_>>();
                let payloads: Vec<&[u8]> = bills.iter().map(|b| b.verified_payload.as_slice()).collect();
                let ids = column(|b| &b.dossier_id);
                sqlx::query(&format!(
                    "INSERT INTO bills ({COLUMNS})
                     SELECT r, d, a, 'pending', i, e, NULL, NULL, 0, p
                     FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[]) AS t(r, d, a, i, e, p)
                     ON CONFLICT (dossier_id) DO NOTHING"
                ))
                .bind(column(|b| &b.bill_reference))
                .bind(&ids)
                .bind(ints(|b| b.amount_vnd))
                .bind(ints(|b| b.issued_at_ms))
                .bind(ints(|b| b.expires_at_ms))
                .bind(payloads)
                .execute(&mut *tx)
                .await?;
                for row in sqlx::query(&format!("SELECT {COLUMNS} FROM bills WHERE dossier_id = ANY($1)"))
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    let b = bill(&row);
                    stored.insert(b.dossier_id.clone(), b);
                }
                tx.commit().await?;
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for chunk in bills.chunks(crate::SQLITE_ROWS_PER_STATEMENT / 6) {
                    let sql = format!(
                        "INSERT INTO bills ({COLUMNS}) VALUES {} ON CONFLICT (dossier_id) DO NOTHING",
                        crate::sqlite_values(chunk.len(), 10)
                    );
                    // Not kept prepared: its text changes with the batch's size.
                    let mut q = sqlx::query(&sql).persistent(false);
                    for b in chunk {
                        q = q
                            .bind(&b.bill_reference)
                            .bind(&b.dossier_id)
                            .bind(b.amount_vnd)
                            .bind("pending")
                            .bind(b.issued_at_ms)
                            .bind(b.expires_at_ms)
                            .bind(None::<i64>)
                            .bind(None::<String>)
                            .bind(0_i32)
                            .bind(&b.verified_payload);
                    }
                    q.execute(&mut *tx).await?;
                    let sql = format!(
                        "SELECT {COLUMNS} FROM bills WHERE dossier_id IN ({})",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for b in chunk {
                        q = q.bind(&b.dossier_id);
                    }
                    for row in q.fetch_all(&mut *tx).await? {
                        let b = bill(&row);
                        stored.insert(b.dossier_id.clone(), b);
                    }
                }
                tx.commit().await?;
            }
        }
        bills
            .iter()
            .map(|b| {
                stored
                    .get(&b.dossier_id)
                    .cloned()
                    .ok_or_else(|| sqlx::Error::RowNotFound.into())
            })
            .collect()
    }

    /// Applies a gateway confirmation to its bill, in one transaction. A successful
    /// payment of the full amount settles a pending (or expired: the money was taken, so
    /// it is honoured) bill.
    pub async fn settle(
        &self,
        reference: &str,
        succeeded: bool,
        amount_vnd: i64,
        gateway_tx: &str,
        at_ms: i64,
    ) -> Result<Settlement> {
        // The bill's row is locked for the transaction: two replicas settling
        // confirmations of one bill at once must not both read it pending. (SQLite has one
        // writer: its transactions are serial already.)
        let lock = match self {
            Store::Postgres(_) => " FOR UPDATE",
            Store::Sqlite(_) => "",
        };
        let select = format!("SELECT {COLUMNS} FROM bills WHERE bill_reference = $1{lock}");
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(&select).bind(reference).fetch_optional(&mut *tx).await? else {
                return Ok(Settlement::Unknown);
            };
            let current = bill(&row);
            let outcome = if current.status == "paid" {
                if current.gateway_tx.as_deref() == Some(gateway_tx) {
                    Settlement::Paid(current)
                } else {
                    Settlement::AlreadyPaid(current)
                }
            } else if succeeded && amount_vnd >= current.amount_vnd {
                sqlx::query(
                    "UPDATE bills SET status = 'paid', paid_at_ms = $2, gateway_tx = $3 WHERE bill_reference = $1",
                )
                .bind(reference)
                .bind(at_ms)
                .bind(gateway_tx)
                .execute(&mut *tx)
                .await?;
                Settlement::Paid(Bill {
                    status: "paid".to_owned(),
                    paid_at_ms: Some(at_ms),
                    gateway_tx: Some(gateway_tx.to_owned()),
                    ..current
                })
            } else {
                // One count per failed attempt (gateway transaction), however often its
                // confirmation is delivered.
                let new_attempt = sqlx::query(
                    "INSERT INTO bill_failures (bill_reference, gateway_tx) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(reference)
                .bind(gateway_tx)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if new_attempt {
                    sqlx::query("UPDATE bills SET failures = failures + 1 WHERE bill_reference = $1")
                        .bind(reference)
                        .execute(&mut *tx)
                        .await?;
                }
                Settlement::Failed(Bill {
                    failures: current.failures + i32::from(new_attempt),
                    ..current
                })
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// Pending bills past their expiry (to announce, then [`Store::mark_expired`]).
    pub async fn bills_due_for_expiry(&self, now_ms: i64, limit: i64) -> Result<Vec<Bill>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM bills WHERE status = 'pending' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(bill)
            .collect()))
    }

    /// Marks a bill expired — unless it was paid meanwhile.
    pub async fn mark_expired(&self, bill_reference: &str) -> Result<()> {
        let sql = "UPDATE bills SET status = 'expired' WHERE bill_reference = $1 AND status = 'pending'";
        both!(self, |pool| {
            sqlx::query(sql).bind(bill_reference).execute(pool).await?;
            Ok(())
        })
    }

    /// The bill of a dossier, if it has one (a withdrawal cancels or refunds it).
    pub async fn bill_of_dossier(&self, dossier_id: &str) -> Result<Option<Bill>> {
        let sql = format!("SELECT {COLUMNS} FROM bills WHERE dossier_id = $1");
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(dossier_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(bill)))
    }

    /// Every bill, for reconciliation.
    pub async fn bills(&self) -> Result<Vec<Bill>> {
        let sql = format!("SELECT {COLUMNS} FROM bills ORDER BY issued_at_ms, bill_reference");
        both!(self, |pool| Ok(sqlx::query(&sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(bill)
            .collect()))
    }
}
