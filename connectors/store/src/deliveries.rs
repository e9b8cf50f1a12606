//! The audit of result deliveries: every document an e-wallet acknowledged, who delivered
//! it, when, and the wallet's receipt.

use sqlx::Row;

use crate::{Result, Store};

/// One acknowledged delivery. No owner: the receipt and the dossier name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDeliveryRecord {
    pub idempotency_key: String,
    pub dossier_id: String,
    pub dossier_code: String,
    pub document_ref: String,
    pub document_sha256: String,
    pub receipt_id: String,
    /// Stage and replica, e.g. `result/result-0`.
    pub delivered_by: String,
    pub delivered_at_ms: i64,
    /// The wallet had it already (an acknowledgement was lost before).
    pub duplicate_ack: bool,
}

const COLUMNS: &str = "idempotency_key, dossier_id, dossier_code, document_ref, document_sha256, receipt_id, \
                       delivered_by, delivered_at_ms, duplicate_ack";

impl Store {
    /// Records acknowledged deliveries (a key recorded before keeps its first record) and
    /// returns, per row, when its key was first acknowledged and the wallet's receipt
    /// then: whoever delivers the same document again (a decision sent twice, the retrier
    /// after a redelivery) announces it with that same time and receipt, so its events
    /// are the same whatever the wallet answers the second time.
    pub async fn record_wallet_deliveries(&self, rows: &[WalletDeliveryRecord]) -> Result<Vec<(i64, String)>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let insert = format!(
            "INSERT INTO wallet_deliveries ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (idempotency_key) DO NOTHING"
        );
        let first = "SELECT delivered_at_ms, receipt_id FROM wallet_deliveries WHERE idempotency_key = $1";
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut firsts = Vec::with_capacity(rows.len());
            for r in rows {
                sqlx::query(&insert)
                    .bind(&r.idempotency_key)
                    .bind(&r.dossier_id)
                    .bind(&r.dossier_code)
                    .bind(&r.document_ref)
                    .bind(&r.document_sha256)
                    .bind(&r.receipt_id)
                    .bind(&r.delivered_by)
                    .bind(r.delivered_at_ms)
                    .bind(r.duplicate_ack)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(first).bind(&r.idempotency_key).fetch_one(&mut *tx).await?;
                firsts.push((row.get(0), row.get(1)));
            }
            tx.commit().await?;
            Ok(firsts)
        })
    }

    /// The recorded deliveries, oldest first: at most `limit`.
    pub async fn wallet_deliveries(&self, limit: i64) -> Result<Vec<WalletDeliveryRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM wallet_deliveries ORDER BY delivered_at_ms, idempotency_key LIMIT $1");
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| WalletDeliveryRecord {
                idempotency_key: r.get("idempotency_key"),
                dossier_id: r.get("dossier_id"),
                dossier_code: r.get("dossier_code"),
                document_ref: r.get("document_ref"),
                document_sha256: r.get("document_sha256"),
                receipt_id: r.get("receipt_id"),
                delivered_by: r.get("delivered_by"),
                delivered_at_ms: r.get("delivered_at_ms"),
                duplicate_ack: r.get("duplicate_ack"),
            })
            .collect()))
    }
}
