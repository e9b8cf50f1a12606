//! A dossier's life off the straight line: waits for a citizen's supplement (the legal
//! clock's pauses) and the one way each dossier ends (decided, withdrawn or stopped).
//!
//! The step that asks for a supplement records the wait; intake answers it, stops it
//! when no supplement comes, or closes it on a withdrawal; route reads the answered
//! waits as the clock's pauses. Every write is idempotent by event id, so a redelivered
//! request, answer or withdrawal finds its first effect and changes nothing.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use crate::{Result, Store};

/// A supplement request, as the asking step records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRequest {
    /// The id of the status event that asked: a redelivered request is the same wait.
    pub request_event_id: String,
    pub dossier_id: String,
    pub dossier_code: Option<String>,
    /// `intake`, `verify` or `backoffice`.
    pub step: String,
    pub requested_at_ms: i64,
    /// The framed message the step resumes the dossier from.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitState {
    Waiting,
    Answered,
    Stopped,
    Withdrawn,
    /// A later request of the same dossier replaced it (the portal resubmitted the
    /// dossier instead of supplementing it): not a pause, not answerable.
    Superseded,
}

impl WaitState {
    fn parse(s: &str) -> Self {
        match s {
            "answered" => WaitState::Answered,
            "stopped" => WaitState::Stopped,
            "withdrawn" => WaitState::Withdrawn,
            "superseded" => WaitState::Superseded,
            _ => WaitState::Waiting,
        }
    }
}

/// A recorded wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub request: WaitRequest,
    pub stop_at_ms: Option<i64>,
    pub state: WaitState,
    pub answer_event_id: Option<String>,
    pub answered_at_ms: Option<i64>,
}

/// One pause of the legal clock: an answered wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub step: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureKind {
    Decided,
    Withdrawn,
    Stopped,
}

impl ClosureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosureKind::Decided => "decided",
            ClosureKind::Withdrawn => "withdrawn",
            ClosureKind::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "withdrawn" => ClosureKind::Withdrawn,
            "stopped" => ClosureKind::Stopped,
            _ => ClosureKind::Decided,
        }
    }
}

/// How a dossier ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub dossier_id: String,
    pub kind: ClosureKind,
    pub event_id: String,
    pub closed_at_ms: i64,
}

const WAIT_COLUMNS: &str = "request_event_id, dossier_id, dossier_code, step, requested_at_ms, payload, stop_at_ms, \
                            state, answer_event_id, answered_at_ms";

fn wait<R: Row>(r: &R) -> Wait
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Wait {
        request: WaitRequest {
            request_event_id: r.get("request_event_id"),
            dossier_id: r.get("dossier_id"),
            dossier_code: r.get("dossier_code"),
            step: r.get("step"),
            requested_at_ms: r.get("requested_at_ms"),
            payload: r.get("payload"),
        },
        stop_at_ms: r.get("stop_at_ms"),
        state: WaitState::parse(&r.get::<String, _>("state")),
        answer_event_id: r.get("answer_event_id"),
        answered_at_ms: r.get("answered_at_ms"),
    }
}

fn closure<R: Row>(r: &R) -> Closure
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Closure {
        dossier_id: r.get("dossier_id"),
        kind: ClosureKind::parse(&r.get::<String, _>("kind")),
        event_id: r.get("event_id"),
        closed_at_ms: r.get("closed_at_ms"),
    }
}

const INSERT_WAIT: &str = "INSERT INTO supplement_waits
    (request_event_id, dossier_id, dossier_code, step, requested_at_ms, payload)
    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_event_id) DO NOTHING";

const INSERT_CLOSURE: &str = "INSERT INTO dossier_closures (dossier_id, kind, event_id, closed_at_ms)
    VALUES ($1, $2, $3, $4) ON CONFLICT (dossier_id) DO NOTHING";

/// A closed dossier's desk load is freed; its routed message (personal data) is not
/// needed any more.
const CLOSE_ASSIGNMENT: &str =
    "UPDATE routing_assignments SET closed = TRUE, routed_payload = NULL WHERE dossier_id = $1";

const SELECT_CLOSURE: &str =
    "SELECT dossier_id, kind, event_id, closed_at_ms FROM dossier_closures WHERE dossier_id = $1";

impl Store {
    /// Records supplement requests (a request recorded before is left as it is). A
    /// dossier still waiting for another request had it answered some other way (the
    /// portal resubmitted it): that wait is superseded, so at most one waits per dossier.
    /// A dossier that ended (withdrawn, stopped; checked under the lock its end takes)
    /// gets no wait: returns the requests that are recorded, the others' dossiers ended.
    pub async fn await_supplements(&self, requests: &[WaitRequest]) -> Result<HashSet<String>> {
        let mut recorded = HashSet::new();
        if requests.is_empty() {
            return Ok(recorded);
        }
        let supersede = "UPDATE supplement_waits SET state = 'superseded'
                         WHERE dossier_id = $1 AND state = 'waiting' AND request_event_id <> $2
                           AND NOT EXISTS (SELECT 1 FROM supplement_waits WHERE request_event_id = $2)";
        let ended = "SELECT 1 FROM dossier_closures WHERE dossier_id = $1 AND kind <> 'decided'";
        let known = "SELECT 1 FROM supplement_waits WHERE request_event_id = $1";
        macro_rules! record {
            ($tx:ident) => {{
                for w in requests {
                    let was_recorded = sqlx::query(known)
                        .bind(&w.request_event_id)
                        .fetch_optional(&mut *$tx)
                        .await?
                        .is_some();
                    if !was_recorded {
                        if sqlx::query(ended)
                            .bind(&w.dossier_id)
                            .fetch_optional(&mut *$tx)
                            .await?
                            .is_some()
                        {
                            continue;
                        }
                        sqlx::query(supersede)
                            .bind(&w.dossier_id)
                            .bind(&w.request_event_id)
                            .execute(&mut *$tx)
                            .await?;
                        sqlx::query(INSERT_WAIT)
                            .bind(&w.request_event_id)
                            .bind(&w.dossier_id)
                            .bind(&w.dossier_code)
                            .bind(&w.step)
                            .bind(w.requested_at_ms)
                            .bind(&w.payload)
                            .execute(&mut *$tx)
                            .await?;
                    }
                    recorded.insert(w.request_event_id.clone());
                }
                $tx.commit().await?;
                Ok(recorded)
            }};
        }
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                crate::lock_dossiers(&mut tx, requests.iter().map(|w| w.dossier_id.as_str())).await?;
                record!(tx)
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                record!(tx)
            }
        }
    }

    /// Supersedes the waits still open of dossiers that were accepted without answering
    /// them (the portal resubmitted the dossier complete instead of supplementing it): no
    /// supplement is expected any more, and none may stop the dossier.
    pub async fn supersede_waits(&self, dossier_ids: &[&str]) -> Result<()> {
        if dossier_ids.is_empty() {
            return Ok(());
        }
        // One statement per batch: intake calls it for every accepted batch.
        match self {
            Store::Postgres(p) => {
                sqlx::query(
                    "UPDATE supplement_waits SET state = 'superseded' WHERE dossier_id = ANY($1) AND state = 'waiting'",
                )
                .bind(dossier_ids)
                .execute(p)
                .await?;
            }
            Store::Sqlite(p) => {
                for chunk in dossier_ids.chunks(crate::rows_per_statement(1)) {
                    let sql = format!(
                        "UPDATE supplement_waits SET state = 'superseded' WHERE state = 'waiting' AND dossier_id IN ({})",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(p).await?;
                }
            }
        }
        Ok(())
    }

    /// The wait a supplement `answer_event_id` for `dossier_id` concerns: the one it
    /// answered already (a redelivery), else the dossier's waiting one, else its latest.
    pub async fn wait_for(&self, dossier_id: &str, answer_event_id: &str) -> Result<Option<Wait>> {
        let sql = format!(
            "SELECT {WAIT_COLUMNS} FROM supplement_waits WHERE dossier_id = $1
             ORDER BY CASE WHEN answer_event_id = $2 THEN 0 WHEN state = 'waiting' THEN 1 ELSE 2 END,
                      requested_at_ms DESC
             LIMIT 1"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(dossier_id)
            .bind(answer_event_id)
            .fetch_optional(pool)
            .await?
            .map(|r| wait(&r))))
    }

    /// Marks a wait answered by `answer_event_id` at `answered_at_ms` and, when the
    /// supplement asks again (`again`), records the next wait in the same transaction.
    /// Returns whether the wait is (now or before) answered by this supplement: `false`
    /// when it was answered by another one, stopped or withdrawn meanwhile.
    pub async fn answer_wait(
        &self,
        request_event_id: &str,
        answer_event_id: &str,
        answered_at_ms: i64,
        again: Option<&WaitRequest>,
    ) -> Result<bool> {
        let update = "UPDATE supplement_waits SET state = 'answered', answer_event_id = $2, answered_at_ms = $3
                      WHERE request_event_id = $1 AND state = 'waiting'";
        let check = "SELECT answer_event_id FROM supplement_waits WHERE request_event_id = $1";
        both!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(update)
                .bind(request_event_id)
                .bind(answer_event_id)
                .bind(answered_at_ms)
                .execute(&mut *tx)
                .await?;
            let by: Option<String> = sqlx::query(check)
                .bind(request_event_id)
                .fetch_optional(&mut *tx)
                .await?
                .and_then(|r| r.get::<Option<String>, _>(0));
            let ours = by.as_deref() == Some(answer_event_id);
            if let (true, Some(w)) = (ours, again) {
                sqlx::query(INSERT_WAIT)
                    .bind(&w.request_event_id)
                    .bind(&w.dossier_id)
                    .bind(&w.dossier_code)
                    .bind(&w.step)
                    .bind(w.requested_at_ms)
                    .bind(&w.payload)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(ours)
        })
    }

    /// The pauses of the legal clock of each dossier (answered waits), oldest first. A
    /// wait at reception is no pause: the clock starts once the dossier is complete.
    pub async fn clock_pauses(&self, dossier_ids: &[&str]) -> Result<HashMap<String, Vec<Pause>>> {
        let mut out: HashMap<String, Vec<Pause>> = HashMap::new();
        if dossier_ids.is_empty() {
            return Ok(out);
        }
        let rows: Vec<(String, String, i64, i64)> = match self {
            Store::Postgres(p) => sqlx::query(
                "SELECT dossier_id, step, requested_at_ms, answered_at_ms FROM supplement_waits
                 WHERE dossier_id = ANY($1) AND state = 'answered' AND step <> 'intake' ORDER BY requested_at_ms",
            )
            .bind(dossier_ids)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
            Store::Sqlite(p) => {
                let mut rows = Vec::new();
                for chunk in dossier_ids.chunks(crate::rows_per_statement(1)) {
                    let sql = format!(
                        "SELECT dossier_id, step, requested_at_ms, answered_at_ms FROM supplement_waits
                         WHERE dossier_id IN ({}) AND state = 'answered' AND step <> 'intake' ORDER BY requested_at_ms",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    rows.extend(
                        q.fetch_all(p)
                            .await?
                            .iter()
                            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
                    );
                }
                rows
            }
        };
        for (dossier_id, step, from_ms, to_ms) in rows {
            out.entry(dossier_id).or_default().push(Pause { step, from_ms, to_ms });
        }
        Ok(out)
    }

    /// Waits without a stop time yet (intake computes it from its calendar), at most
    /// `limit`.
    pub async fn waits_without_stop(&self, limit: i64) -> Result<Vec<Wait>> {
        let sql = format!(
            "SELECT {WAIT_COLUMNS} FROM supplement_waits WHERE state = 'waiting' AND stop_at_ms IS NULL
             ORDER BY requested_at_ms LIMIT $1"
        );
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(wait)
            .collect()))
    }

    pub async fn set_stop_at(&self, request_event_id: &str, stop_at_ms: i64) -> Result<()> {
        let sql = "UPDATE supplement_waits SET stop_at_ms = $2 WHERE request_event_id = $1";
        both!(self, |pool| {
            sqlx::query(sql)
                .bind(request_event_id)
                .bind(stop_at_ms)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Stops the waits due at `now_ms` (at most `limit`): each dossier is closed as
    /// stopped by `stop_event_id(wait)` unless something closed it first, and its wait
    /// is marked stopped. Then returns every stopped wait whose stop has not been
    /// announced yet (those of an earlier round that crashed included).
    pub async fn stop_due_waits(
        &self,
        now_ms: i64,
        limit: i64,
        stop_event_id: impl Fn(&WaitRequest) -> String,
    ) -> Result<Vec<Wait>> {
        let due = format!(
            "SELECT {WAIT_COLUMNS} FROM supplement_waits
             WHERE state = 'waiting' AND stop_at_ms IS NOT NULL AND stop_at_ms <= $1
             ORDER BY stop_at_ms LIMIT $2"
        );
        let unannounced = format!(
            "SELECT {WAIT_COLUMNS} FROM supplement_waits WHERE state = 'stopped' AND announced = FALSE
             ORDER BY stop_at_ms LIMIT $1"
        );
        // The body, once per backend (their transactions are different types); every
        // closure of the round under the dossiers' lock (PostgreSQL), or the one writer's.
        macro_rules! stop {
            ($tx:expr, $lock:expr) => {{
            let mut tx = $tx;
            let rows: Vec<Wait> = sqlx::query(&due)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(wait)
                .collect();
            $lock(&mut tx, rows.iter().map(|w| w.request.dossier_id.as_str())).await?;
            // A dossier another stage still owes a status of is stopped at a later round.
            let owed = crate::announcements::owed_among!(tx, rows.iter().map(|w| w.request.dossier_id.as_str()));
            for w in rows.iter().filter(|w| !owed.contains(&w.request.dossier_id)) {
                // Claimed first, still waiting: a supplement answered meanwhile (intake's
                // consume loop runs beside this timer) keeps its answer, and the wait is
                // not stopped too (both would be announced).
                let claimed = sqlx::query(
                    "UPDATE supplement_waits SET state = 'stopped' WHERE request_event_id = $1 AND state = 'waiting'",
                )
                .bind(&w.request.request_event_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !claimed {
                    continue;
                }
                let at = w.stop_at_ms.unwrap_or(now_ms);
                let closed = sqlx::query(INSERT_CLOSURE)
                    .bind(&w.request.dossier_id)
                    .bind(ClosureKind::Stopped.as_str())
                    .bind(stop_event_id(&w.request))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if closed.rows_affected() == 1 {
                    // A dossier the back office was waiting on frees its desk.
                    sqlx::query(CLOSE_ASSIGNMENT)
                        .bind(&w.request.dossier_id)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    // Ended some other way first (a stop elsewhere): this wait ends
                    // without a stop to announce, or the dossier would end twice.
                    sqlx::query("UPDATE supplement_waits SET state = 'superseded' WHERE request_event_id = $1")
                        .bind(&w.request.request_event_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let stopped = sqlx::query(&unannounced)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(wait)
                .collect();
            tx.commit().await?;
            Ok(stopped)
            }};
        }
        match self {
            Store::Postgres(pool) => stop!(pool.begin().await?, crate::lock_dossiers),
            Store::Sqlite(pool) => stop!(pool.begin_with("BEGIN IMMEDIATE").await?, no_lock),
        }
    }

    /// The stop of this wait was announced (its status event acknowledged).
    pub async fn announce_stop(&self, request_event_id: &str) -> Result<()> {
        let sql = "UPDATE supplement_waits SET announced = TRUE WHERE request_event_id = $1";
        both!(self, |pool| {
            sqlx::query(sql).bind(request_event_id).execute(pool).await?;
            Ok(())
        })
    }

    /// Closes a dossier unless it is closed already; returns its closure (this one, or
    /// the earlier one). [`crate::Error::AnnouncementsOwed`] while another stage still
    /// owes a status of it ([`Store::owe`]). A withdrawal or decision also ends the dossier's open wait, and
    /// every closure frees its desk.
    pub async fn close_dossier(
        &self,
        dossier_id: &str,
        kind: ClosureKind,
        event_id: &str,
        at_ms: i64,
    ) -> Result<Closure> {
        // The body, once per backend (their transactions are different types).
        macro_rules! close {
            ($tx:ident) => {{
                // Not while another stage still owes a status of the dossier: it would
                // reach dossier.status after the end (a redelivered closure finds its row).
                let closed = sqlx::query(SELECT_CLOSURE)
                    .bind(dossier_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
                if closed.is_none() && !crate::announcements::owed_among!($tx, [dossier_id]).is_empty() {
                    return Err(crate::Error::owed(dossier_id));
                }
                let done = sqlx::query(INSERT_CLOSURE)
                    .bind(dossier_id)
                    .bind(kind.as_str())
                    .bind(event_id)
                    .bind(at_ms)
                    .execute(&mut *$tx)
                    .await?;
                // A wait still open ends with the dossier: withdrawn with it, or replaced by a
                // decision the back office made without the papers (never stopped later).
                let ended_wait = match kind {
                    ClosureKind::Withdrawn => Some("withdrawn"),
                    ClosureKind::Decided => Some("superseded"),
                    ClosureKind::Stopped => None,
                };
                if let (1, Some(state)) = (done.rows_affected(), ended_wait) {
                    sqlx::query("UPDATE supplement_waits SET state = $2 WHERE dossier_id = $1 AND state = 'waiting'")
                        .bind(dossier_id)
                        .bind(state)
                        .execute(&mut *$tx)
                        .await?;
                }
                if done.rows_affected() == 1 {
                    sqlx::query(CLOSE_ASSIGNMENT)
                        .bind(dossier_id)
                        .execute(&mut *$tx)
                        .await?;
                }
                let stored = sqlx::query(SELECT_CLOSURE)
                    .bind(dossier_id)
                    .fetch_one(&mut *$tx)
                    .await?;
                $tx.commit().await?;
                Ok(closure(&stored))
            }};
        }
        // Under the dossier's lock: a bill is never stored for a dossier that ended
        // ([`Store::issue_bills`] takes it too), and a closure's reader then sees every
        // bill stored before it.
        match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                crate::lock_dossiers(&mut tx, [dossier_id]).await?;
                close!(tx)
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                close!(tx)
            }
        }
    }

    pub async fn closure(&self, dossier_id: &str) -> Result<Option<Closure>> {
        both!(self, |pool| Ok(sqlx::query(SELECT_CLOSURE)
            .bind(dossier_id)
            .fetch_optional(pool)
            .await?
            .map(|r| closure(&r))))
    }

    /// Of these dossiers, the ones withdrawn or stopped: no stage passes them on.
    pub async fn ended_among(&self, dossier_ids: &[&str]) -> Result<HashSet<String>> {
        if dossier_ids.is_empty() {
            return Ok(HashSet::new());
        }
        match self {
            Store::Postgres(p) => Ok(sqlx::query(
                "SELECT dossier_id FROM dossier_closures WHERE dossier_id = ANY($1) AND kind <> 'decided'",
            )
            .bind(dossier_ids)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()),
            Store::Sqlite(p) => {
                let mut out = HashSet::new();
                for chunk in dossier_ids.chunks(crate::rows_per_statement(1)) {
                    let sql = format!(
                        "SELECT dossier_id FROM dossier_closures WHERE dossier_id IN ({}) AND kind <> 'decided'",
                        crate::sqlite_values(chunk.len(), 1)
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    out.extend(q.fetch_all(p).await?.iter().map(|r| r.get::<String, _>(0)));
                }
                Ok(out)
            }
        }
    }

    /// The waits of one dossier, oldest first (operators, tests).
    pub async fn waits_of(&self, dossier_id: &str) -> Result<Vec<Wait>> {
        let sql = format!("SELECT {WAIT_COLUMNS} FROM supplement_waits WHERE dossier_id = $1 ORDER BY requested_at_ms");
        both!(self, |pool| Ok(sqlx::query(&sql)
            .bind(dossier_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(wait)
            .collect()))
    }
}

/// SQLite has one writer (its closing transactions begin IMMEDIATE): nothing to lock.
async fn no_lock<'a>(_: &mut sqlx::SqliteConnection, _: impl IntoIterator<Item = &'a str>) -> Result<()> {
    Ok(())
}
