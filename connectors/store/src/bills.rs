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

/// A gateway's confirmation of a payment attempt, as the store settles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation<'a> {
    pub bill_reference: &'a str,
    pub succeeded: bool,
    pub amount_vnd: i64,
    pub gateway_tx: &'a str,
    pub at_ms: i64,
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

/// Dossiers that ended (withdrawn or stopped) get no bill.
const NOT_ENDED: &str =
    "NOT EXISTS (SELECT 1 FROM dossier_closures c WHERE c.dossier_id = t.d AND c.kind <> 'decided')";

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
    pub async fn issue_bill(&self, b: &Bill) -> Result<Option<Bill>> {
        let mut stored = self.issue_bills(std::slice::from_ref(b)).await?;
        stored.pop().ok_or_else(|| sqlx::Error::RowNotFound.into())
    }

    /// Issues a batch's bills in one transaction, a few statements in all; returns each
    /// dossier's stored bill, in the order asked (idempotent like [`Store::issue_bill`]: a
    /// dossier billed before, or twice in the batch, keeps its first bill). A dossier that
    /// ended before it was billed (withdrawn or stopped; checked under the lock its end
    /// takes) gets none: `None`.
    pub async fn issue_bills(&self, bills: &[Bill]) -> Result<Vec<Option<Bill>>> {
        if bills.is_empty() {
            return Ok(Vec::new());
        }
        let mut stored: std::collections::HashMap<String, Bill> = std::collections::HashMap::with_capacity(bills.len());
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                crate::lock_dossiers(&mut tx, bills.iter().map(|b| b.dossier_id.as_str())).await?;
                let column = |f: fn(&Bill) -> &str| bills.iter().map(f).collect::<Vec<_>>();
                let ints = |f: fn(&Bill) -> i64| bills.iter().map(f).collect::<Vec<_>>();
                let payloads: Vec<&[u8]> = bills.iter().map(|b| b.verified_payload.as_slice()).collect();
                let ids = column(|b| &b.dossier_id);
                sqlx::query(&format!(
                    "INSERT INTO bills ({COLUMNS})
                     SELECT r, d, a, 'pending', i, e, NULL, NULL, 0, p
                     FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[]) AS t(r, d, a, i, e, p)
                     WHERE {NOT_ENDED}
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
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                for chunk in bills.chunks(crate::rows_per_statement(10)) {
                    let sql = format!(
                        "SELECT dossier_id FROM dossier_closures WHERE kind <> 'decided' AND dossier_id IN ({})",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for b in chunk {
                        q = q.bind(&b.dossier_id);
                    }
                    let ended: std::collections::HashSet<String> =
                        q.fetch_all(&mut *tx).await?.iter().map(|r| r.get(0)).collect();
                    let chunk: Vec<&Bill> = chunk.iter().filter(|b| !ended.contains(&b.dossier_id)).collect();
                    if chunk.is_empty() {
                        continue;
                    }
                    let sql = format!(
                        "INSERT INTO bills ({COLUMNS}) VALUES {} ON CONFLICT (dossier_id) DO NOTHING",
                        crate::sqlite_values(chunk.len(), 10)
                    );
                    // Not kept prepared: its text changes with the batch's size.
                    let mut q = sqlx::query(&sql).persistent(false);
                    for b in &chunk {
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
                    for b in &chunk {
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
        Ok(bills.iter().map(|b| stored.get(&b.dossier_id).cloned()).collect())
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
        let mut settled = self
            .settle_all(&[Confirmation {
                bill_reference: reference,
                succeeded,
                amount_vnd,
                gateway_tx,
                at_ms,
            }])
            .await?;
        settled.pop().ok_or_else(|| sqlx::Error::RowNotFound.into())
    }

    /// Applies a batch's confirmations in order, in one transaction: the bills are read
    /// in one statement, each confirmation is judged against its bill as the ones before
    /// it left it, and only changes are written. What each came to, in order.
    pub async fn settle_all(&self, confirmations: &[Confirmation<'_>]) -> Result<Vec<Settlement>> {
        if confirmations.is_empty() {
            return Ok(Vec::new());
        }
        let mut references: Vec<&str> = confirmations.iter().map(|c| c.bill_reference).collect();
        references.sort_unstable();
        references.dedup();
        let mut bills: std::collections::HashMap<String, Bill> = std::collections::HashMap::new();
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The bills' rows are locked for the transaction (in one order, so replicas
            // cannot deadlock): two replicas settling confirmations of one bill at once
            // must not both read it pending. SQLite has one writer: its transactions are
            // serial already.
            for chunk in references.chunks(crate::rows_per_statement(1)) {
                let lock = match self {
                    Store::Postgres(_) => " ORDER BY bill_reference FOR UPDATE",
                    Store::Sqlite(_) => "",
                };
                let sql = format!(
                    "SELECT {COLUMNS} FROM bills WHERE bill_reference IN ({}){lock}",
                    self.values(chunk.len(), 1)
                );
                let mut q = sqlx::query(&sql).persistent(false);
                for r in chunk {
                    q = q.bind(*r);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    let b = bill(&row);
                    bills.insert(b.bill_reference.clone(), b);
                }
            }
            let mut out = Vec::with_capacity(confirmations.len());
            for c in confirmations {
                let Some(current) = bills.get_mut(c.bill_reference) else {
                    out.push(Settlement::Unknown);
                    continue;
                };
                out.push(if current.status == "paid" {
                    if current.gateway_tx.as_deref() == Some(c.gateway_tx) {
                        Settlement::Paid(current.clone())
                    } else {
                        Settlement::AlreadyPaid(current.clone())
                    }
                } else if c.succeeded && c.amount_vnd >= current.amount_vnd {
                    sqlx::query(
                        "UPDATE bills SET status = 'paid', paid_at_ms = $2, gateway_tx = $3 WHERE bill_reference = $1",
                    )
                    .bind(c.bill_reference)
                    .bind(c.at_ms)
                    .bind(c.gateway_tx)
                    .execute(&mut *tx)
                    .await?;
                    current.status = "paid".to_owned();
                    current.paid_at_ms = Some(c.at_ms);
                    current.gateway_tx = Some(c.gateway_tx.to_owned());
                    Settlement::Paid(current.clone())
                } else {
                    // One count per failed attempt (gateway transaction), however often
                    // its confirmation is delivered.
                    let new_attempt = sqlx::query(
                        "INSERT INTO bill_failures (bill_reference, gateway_tx) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    )
                    .bind(c.bill_reference)
                    .bind(c.gateway_tx)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if new_attempt {
                        sqlx::query("UPDATE bills SET failures = failures + 1 WHERE bill_reference = $1")
                            .bind(c.bill_reference)
                            .execute(&mut *tx)
                            .await?;
                        current.failures += 1;
                    }
                    Settlement::Failed(current.clone())
                });
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Expires every pending bill past its validity, and records each expiry to announce
    /// ([`Store::unannounced_expiries`]), in one transaction. A bill settled first stays
    /// paid (its row lock orders the two); a bill settled after it is honoured, but its
    /// dossier ended with the expiry. Returns how many expired.
    pub async fn expire_due_bills(&self, now_ms: i64) -> Result<u64> {
        let expire = "UPDATE bills SET status = 'expired' WHERE status = 'pending' AND expires_at_ms <= $1
                      RETURNING bill_reference, dossier_id, expires_at_ms";
        let record = "INSERT INTO bill_expiries (bill_reference, dossier_id, expired_at_ms) VALUES ($1, $2, $3)
                      ON CONFLICT (bill_reference) DO NOTHING";
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            let expired = sqlx::query(expire).bind(now_ms).fetch_all(&mut *tx).await?;
            for row in &expired {
                sqlx::query(record)
                    .bind(row.get::<String, _>(0))
                    .bind(row.get::<String, _>(1))
                    .bind(row.get::<i64, _>(2))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(expired.len() as u64)
        })
    }

    /// Expired bills whose expiry is not announced yet, oldest first: at most `limit`.
    pub async fn unannounced_expiries(&self, limit: i64) -> Result<Vec<Bill>> {
        let sql = format!(
            "SELECT {} FROM bills b JOIN bill_expiries x ON x.bill_reference = b.bill_reference
             WHERE NOT x.announced ORDER BY x.expired_at_ms, b.bill_reference LIMIT $1",
            COLUMNS
                .split(", ")
                .map(|c| format!("b.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(bill)
            .collect()))
    }

    /// The expiry of this bill went out (or had nothing to say: its dossier ended first).
    pub async fn expiry_announced(&self, bill_reference: &str) -> Result<()> {
        let sql = "UPDATE bill_expiries SET announced = TRUE WHERE bill_reference = $1";
        both!(self, |pool| {
            sqlx::query(sql).bind(bill_reference).execute(pool).await?;
            Ok(())
        })
    }

    /// Cancels a bill (a withdrawal): expired without an announcement — unless it was
    /// paid meanwhile.
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
