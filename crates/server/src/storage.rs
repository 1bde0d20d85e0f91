//! Durable records: calls, queue and agent events, callback requests and customer card states.
//!
//! The embedded store is SQLite in WAL mode with one transaction per write, so a killed process
//! loses nothing it had already written. The server talks to storage only through the
//! [`Store`] trait, so that a PostgreSQL implementation is a new type, not a rewrite.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::write_behind::PendingWrite;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database: stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("database: the connection lock was poisoned by a panic")]
    Poisoned,
}

/// How a call ended, from the call centre's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// An agent talked to the caller.
    Answered,
    /// The caller hung up while waiting in a queue.
    Abandoned,
    /// The IVR served the caller without an agent.
    SelfService,
    /// The caller left a voicemail.
    Voicemail,
    /// No agent could take the call (queue exit: no agents, full, timeout).
    NoAgent,
    /// The call failed (signalling or media error).
    Failed,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Abandoned => "abandoned",
            Disposition::SelfService => "self-service",
            Disposition::Voicemail => "voicemail",
            Disposition::NoAgent => "no-agent",
            Disposition::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Disposition> {
        Some(match text {
            "answered" => Disposition::Answered,
            "abandoned" => Disposition::Abandoned,
            "self-service" => Disposition::SelfService,
            "voicemail" => Disposition::Voicemail,
            "no-agent" => Disposition::NoAgent,
            "failed" => Disposition::Failed,
            _ => return None,
        })
    }
}

/// Per-call media quality from RTCP and the receiver's own statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualitySummary {
    pub loss_percent: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub mos: f64,
}

/// One call as the call history shows it. Times are Unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub caller: String,
    pub caller_name: Option<String>,
    pub dialled: String,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// IVR steps the caller went through, in order.
    pub ivr_path: Vec<String>,
    pub tags: Vec<String>,
    pub language: Option<String>,
    /// The customer number the IVR verified, if any.
    pub customer: Option<String>,
    pub queue: Option<String>,
    pub wait_ms: Option<i64>,
    pub agent: Option<String>,
    pub talk_ms: Option<i64>,
    pub wrap_up_ms: Option<i64>,
    pub disposition: Option<Disposition>,
    /// "caller", "agent" or "system".
    pub hangup_by: Option<String>,
    pub hangup_reason: Option<String>,
    /// Path of the recording relative to the recordings directory.
    pub recording: Option<String>,
    pub quality: Option<QualitySummary>,
    pub survey_score: Option<u8>,
    /// IVR variables for the record; secrets arrive here already masked.
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// A queue or call event (joined, offered, answered, abandoned, left, escalated, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub call_id: String,
    pub at: i64,
    pub kind: String,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub data: serde_json::Value,
}

/// An agent state change: exact time in state follows from consecutive rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    pub agent: String,
    pub at: i64,
    pub state: String,
    pub previous: Option<String>,
    pub reason: Option<String>,
}

/// A waiting caller's request to be called back; kept until served or cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub id: String,
    pub queue: String,
    pub number: String,
    pub priority: u8,
    /// When the caller first joined the queue: the request keeps this place in line.
    pub joined_at: i64,
    pub requested_at: i64,
    pub language: Option<String>,
}

/// Filter for the call history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CallQuery {
    pub limit: Option<u32>,
    /// Only calls that started at or after this Unix millisecond.
    pub since: Option<i64>,
    pub queue: Option<String>,
    pub agent: Option<String>,
}

/// What the server needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces the call record (written at start and again as the call progresses).
    fn save_call(&self, record: &CallRecord) -> Result<(), StorageError>;
    fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StorageError>;
    fn calls(&self, query: &CallQuery) -> Result<Vec<CallRecord>, StorageError>;
    fn add_call_event(&self, event: &CallEvent) -> Result<(), StorageError>;
    fn call_events(&self, call_id: &str) -> Result<Vec<CallEvent>, StorageError>;
    fn add_agent_event(&self, event: &AgentEvent) -> Result<(), StorageError>;
    fn agent_events(&self, agent: &str, limit: u32) -> Result<Vec<AgentEvent>, StorageError>;
    fn save_callback(&self, request: &CallbackRequest) -> Result<(), StorageError>;
    fn remove_callback(&self, id: &str) -> Result<(), StorageError>;
    /// Open callback requests in their place in line (priority, then join time).
    fn callbacks(&self) -> Result<Vec<CallbackRequest>, StorageError>;
    /// Stores the status of a customer's card (e.g. "blocked") with the time of the change.
    fn set_card_status(
        &self,
        customer: &str,
        card_last4: &str,
        status: &str,
        at: i64,
    ) -> Result<(), StorageError>;
    fn card_status(&self, customer: &str, card_last4: &str)
    -> Result<Option<String>, StorageError>;
    /// Applies writes queued by a write-behind store, one result each (a store that can makes
    /// them one transaction).
    fn write_batch(&self, batch: &[PendingWrite]) -> Vec<Result<(), StorageError>> {
        batch
            .iter()
            .map(|write| write.apply(self.as_dyn()))
            .collect()
    }
    /// Returns once every write accepted so far is stored (a no-op for direct stores).
    fn flush(&self) {}
    /// `self` as a trait object (for provided methods).
    fn as_dyn(&self) -> &dyn Store;
}

/// SQLite store (WAL; every write is its own committed transaction, except batches from the
/// write-behind writer, which are one).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    call_id       TEXT PRIMARY KEY,
    caller        TEXT NOT NULL,
    caller_name   TEXT,
    dialled       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    answered_at   INTEGER,
    ended_at      INTEGER,
    ivr_path      TEXT NOT NULL,
    tags          TEXT NOT NULL,
    language      TEXT,
    customer      TEXT,
    queue         TEXT,
    wait_ms       INTEGER,
    agent         TEXT,
    talk_ms       INTEGER,
    wrap_up_ms    INTEGER,
    disposition   TEXT,
    hangup_by     TEXT,
    hangup_reason TEXT,
    recording     TEXT,
    quality       TEXT,
    survey_score  INTEGER,
    variables     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at DESC);
CREATE INDEX IF NOT EXISTS calls_queue ON calls(queue, started_at DESC);
CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent, started_at DESC);
CREATE TABLE IF NOT EXISTS call_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    queue   TEXT,
    agent   TEXT,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_id, id);
CREATE TABLE IF NOT EXISTS agent_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent    TEXT NOT NULL,
    at       INTEGER NOT NULL,
    state    TEXT NOT NULL,
    previous TEXT,
    reason   TEXT
);
CREATE INDEX IF NOT EXISTS agent_events_agent ON agent_events(agent, id);
CREATE TABLE IF NOT EXISTS callbacks (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    number       TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    joined_at    INTEGER NOT NULL,
    requested_at INTEGER NOT NULL,
    language     TEXT
);
CREATE TABLE IF NOT EXISTS card_status (
    customer   TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    status     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (customer, card_last4)
);
";

impl SqliteStore {
    /// Opens (creating when missing, with its parent directory) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StorageError> {
        let open_err = |source| StorageError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(err))))?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        SqliteStore::init(conn).map_err(|err| match err {
            StorageError::Sql(source) => open_err(source),
            other => other,
        })
    }

    /// A private in-memory database (tests, `--dry-run` tools).
    pub fn in_memory() -> Result<SqliteStore, StorageError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StorageError> {
        // WAL keeps readers (the HTTP API) off the writers' backs; NORMAL sync is durable
        // against a killed process (the WAL is in the OS page cache), which is the promise here.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let conn = self.conn.lock().map_err(|_| StorageError::Poisoned)?;
        f(&conn)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StorageError> {
    Ok(serde_json::to_string(value)?)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StorageError> {
    Ok(serde_json::from_str(text)?)
}

fn call_from_row(row: &rusqlite::Row<'_>) -> Result<CallRecord, StorageError> {
    let ivr_path: String = row.get("ivr_path")?;
    let tags: String = row.get("tags")?;
    let quality: Option<String> = row.get("quality")?;
    let variables: String = row.get("variables")?;
    let disposition: Option<String> = row.get("disposition")?;
    Ok(CallRecord {
        call_id: row.get("call_id")?,
        caller: row.get("caller")?,
        caller_name: row.get("caller_name")?,
        dialled: row.get("dialled")?,
        started_at: row.get("started_at")?,
        answered_at: row.get("answered_at")?,
        ended_at: row.get("ended_at")?,
        ivr_path: from_json(&ivr_path)?,
        tags: from_json(&tags)?,
        language: row.get("language")?,
        customer: row.get("customer")?,
        queue: row.get("queue")?,
        wait_ms: row.get("wait_ms")?,
        agent: row.get("agent")?,
        talk_ms: row.get("talk_ms")?,
        wrap_up_ms: row.get("wrap_up_ms")?,
        disposition: disposition.as_deref().and_then(Disposition::parse),
        hangup_by: row.get("hangup_by")?,
        hangup_reason: row.get("hangup_reason")?,
        recording: row.get("recording")?,
        quality: quality.as_deref().map(from_json).transpose()?,
        survey_score: row.get("survey_score")?,
        variables: from_json(&variables)?,
    })
}

impl Store for SqliteStore {
    fn as_dyn(&self) -> &dyn Store {
        self
    }

    fn write_batch(&self, batch: &[PendingWrite]) -> Vec<Result<(), StorageError>> {
        // One transaction for the batch: one WAL commit instead of one per write. A failed
        // write fails alone (its statement is rolled back by SQLite, the others commit).
        let began = self.with(|conn| Ok(conn.execute_batch("BEGIN")?)).is_ok();
        let results = batch.iter().map(|write| write.apply(self)).collect();
        if began && let Err(err) = self.with(|conn| Ok(conn.execute_batch("COMMIT")?)) {
            tracing::error!(%err, "database: batch not committed");
            let _ = self.with(|conn| Ok(conn.execute_batch("ROLLBACK")?));
        }
        results
    }

    fn save_call(&self, r: &CallRecord) -> Result<(), StorageError> {
        let ivr_path = to_json(&r.ivr_path)?;
        let tags = to_json(&r.tags)?;
        let quality = r.quality.as_ref().map(to_json).transpose()?;
        let variables = to_json(&r.variables)?;
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO calls (call_id, caller, caller_name, dialled, started_at,
                    answered_at, ended_at, ivr_path, tags, language, customer, queue, wait_ms,
                    agent, talk_ms, wrap_up_ms, disposition, hangup_by, hangup_reason, recording,
                    quality, survey_score, variables)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
            )?
            .execute(params![
                r.call_id,
                r.caller,
                r.caller_name,
                r.dialled,
                r.started_at,
                r.answered_at,
                r.ended_at,
                ivr_path,
                tags,
                r.language,
                r.customer,
                r.queue,
                r.wait_ms,
                r.agent,
                r.talk_ms,
                r.wrap_up_ms,
                r.disposition.map(Disposition::as_str),
                r.hangup_by,
                r.hangup_reason,
                r.recording,
                quality,
                r.survey_score,
                variables,
            ])?;
            Ok(())
        })
    }

    fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached("SELECT * FROM calls WHERE call_id = ?1")?;
            let mut rows = stmt.query(params![call_id])?;
            match rows.next()? {
                Some(row) => Ok(Some(call_from_row(row)?)),
                None => Ok(None),
            }
        })
    }

    fn calls(&self, q: &CallQuery) -> Result<Vec<CallRecord>, StorageError> {
        let limit = q.limit.unwrap_or(50).clamp(1, 1000);
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT * FROM calls
                 WHERE (?1 IS NULL OR started_at >= ?1)
                   AND (?2 IS NULL OR queue = ?2)
                   AND (?3 IS NULL OR agent = ?3)
                 ORDER BY started_at DESC, rowid DESC
                 LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![q.since, q.queue, q.agent, limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(call_from_row(row)?);
            }
            Ok(out)
        })
    }

    fn add_call_event(&self, e: &CallEvent) -> Result<(), StorageError> {
        let data = to_json(&e.data)?;
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO call_events (call_id, at, kind, queue, agent, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![e.call_id, e.at, e.kind, e.queue, e.agent, data])?;
            Ok(())
        })
    }

    fn call_events(&self, call_id: &str) -> Result<Vec<CallEvent>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT call_id, at, kind, queue, agent, data FROM call_events
                 WHERE call_id = ?1 ORDER BY id",
            )?;
            let mut rows = stmt.query(params![call_id])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let data: String = row.get(5)?;
                out.push(CallEvent {
                    call_id: row.get(0)?,
                    at: row.get(1)?,
                    kind: row.get(2)?,
                    queue: row.get(3)?,
                    agent: row.get(4)?,
                    data: from_json(&data)?,
                });
            }
            Ok(out)
        })
    }

    fn add_agent_event(&self, e: &AgentEvent) -> Result<(), StorageError> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO agent_events (agent, at, state, previous, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![e.agent, e.at, e.state, e.previous, e.reason])?;
            Ok(())
        })
    }

    fn agent_events(&self, agent: &str, limit: u32) -> Result<Vec<AgentEvent>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT agent, at, state, previous, reason FROM agent_events
                 WHERE agent = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![agent, limit.clamp(1, 10_000)], |row| {
                Ok(AgentEvent {
                    agent: row.get(0)?,
                    at: row.get(1)?,
                    state: row.get(2)?,
                    previous: row.get(3)?,
                    reason: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn save_callback(&self, c: &CallbackRequest) -> Result<(), StorageError> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO callbacks
                    (id, queue, number, priority, joined_at, requested_at, language)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                c.id,
                c.queue,
                c.number,
                c.priority,
                c.joined_at,
                c.requested_at,
                c.language
            ])?;
            Ok(())
        })
    }

    fn remove_callback(&self, id: &str) -> Result<(), StorageError> {
        self.with(|conn| {
            conn.prepare_cached("DELETE FROM callbacks WHERE id = ?1")?
                .execute(params![id])?;
            Ok(())
        })
    }

    fn callbacks(&self) -> Result<Vec<CallbackRequest>, StorageError> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, queue, number, priority, joined_at, requested_at, language
                 FROM callbacks ORDER BY priority DESC, joined_at, id",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(CallbackRequest {
                    id: row.get(0)?,
                    queue: row.get(1)?,
                    number: row.get(2)?,
                    priority: row.get(3)?,
                    joined_at: row.get(4)?,
                    requested_at: row.get(5)?,
                    language: row.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn set_card_status(
        &self,
        customer: &str,
        card_last4: &str,
        status: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO card_status (customer, card_last4, status, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (customer, card_last4)
                 DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )?
            .execute(params![customer, card_last4, status, at])?;
            Ok(())
        })
    }

    fn card_status(
        &self,
        customer: &str,
        card_last4: &str,
    ) -> Result<Option<String>, StorageError> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT status FROM card_status WHERE customer = ?1 AND card_last4 = ?2",
                )?
                .query_row(params![customer, card_last4], |row| row.get(0))
                .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(call_id: &str, started_at: i64, queue: &str, agent: &str) -> CallRecord {
        CallRecord {
            call_id: call_id.to_owned(),
            caller: "05321234567".to_owned(),
            dialled: "1000".to_owned(),
            started_at,
            ivr_path: vec!["welcome".into(), "menu".into()],
            tags: vec!["billing".into()],
            queue: Some(queue.to_owned()),
            agent: Some(agent.to_owned()),
            disposition: Some(Disposition::Answered),
            quality: Some(QualitySummary {
                loss_percent: 0.5,
                jitter_ms: 3.0,
                rtt_ms: Some(1.0),
                mos: 4.3,
            }),
            ..CallRecord::default()
        }
    }

    #[test]
    fn call_records_round_trip_and_filter_newest_first() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .save_call(&record("a", 1_000, "billing", "2001"))
            .unwrap();
        store
            .save_call(&record("b", 2_000, "tech", "2003"))
            .unwrap();
        store
            .save_call(&record("c", 3_000, "billing", "2002"))
            .unwrap();

        let all = store.calls(&CallQuery::default()).unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(all[2], record("a", 1_000, "billing", "2001"));

        let billing = store
            .calls(&CallQuery {
                queue: Some("billing".into()),
                ..CallQuery::default()
            })
            .unwrap();
        assert_eq!(billing.len(), 2);
        let recent = store
            .calls(&CallQuery {
                since: Some(2_000),
                limit: Some(1),
                ..CallQuery::default()
            })
            .unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].call_id, "c");
        let by_agent = store
            .calls(&CallQuery {
                agent: Some("2003".into()),
                ..CallQuery::default()
            })
            .unwrap();
        assert_eq!(by_agent[0].call_id, "b");
    }

    #[test]
    fn saving_again_updates_the_record() {
        let store = SqliteStore::in_memory().unwrap();
        let mut r = record("a", 1_000, "billing", "2001");
        store.save_call(&r).unwrap();
        r.ended_at = Some(9_000);
        r.survey_score = Some(5);
        store.save_call(&r).unwrap();
        assert_eq!(store.call("a").unwrap(), Some(r));
        assert_eq!(store.calls(&CallQuery::default()).unwrap().len(), 1);
        assert_eq!(store.call("missing").unwrap(), None);
    }

    #[test]
    fn events_callbacks_and_cards() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .add_call_event(&CallEvent {
                call_id: "a".into(),
                at: 5,
                kind: "joined".into(),
                queue: Some("billing".into()),
                agent: None,
                data: serde_json::json!({"position": 1}),
            })
            .unwrap();
        let events = store.call_events("a").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data["position"], 1);

        for (at, state) in [(1, "available"), (2, "reserved"), (3, "on-call")] {
            store
                .add_agent_event(&AgentEvent {
                    agent: "2001".into(),
                    at,
                    state: state.into(),
                    previous: None,
                    reason: None,
                })
                .unwrap();
        }
        let states: Vec<String> = store
            .agent_events("2001", 2)
            .unwrap()
            .into_iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(states, ["on-call", "reserved"]);

        let cb = |id: &str, priority, joined_at| CallbackRequest {
            id: id.into(),
            queue: "billing".into(),
            number: "0532".into(),
            priority,
            joined_at,
            requested_at: joined_at + 10,
            language: Some("tr".into()),
        };
        store.save_callback(&cb("late", 0, 50)).unwrap();
        store.save_callback(&cb("early", 0, 10)).unwrap();
        store.save_callback(&cb("vip", 5, 90)).unwrap();
        let order: Vec<String> = store
            .callbacks()
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(order, ["vip", "early", "late"]);
        store.remove_callback("vip").unwrap();
        assert_eq!(store.callbacks().unwrap().len(), 2);

        assert_eq!(store.card_status("100001", "4321").unwrap(), None);
        store
            .set_card_status("100001", "4321", "blocked", 7)
            .unwrap();
        assert_eq!(
            store.card_status("100001", "4321").unwrap().as_deref(),
            Some("blocked")
        );
    }

    #[test]
    fn a_file_database_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/santral.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.save_call(&record("a", 1, "billing", "2001")).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.calls(&CallQuery::default()).unwrap().len(), 1);
        let mode: String = store
            .with(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn an_unopenable_path_is_a_named_error() {
        let err = SqliteStore::open(Path::new("/proc/forbidden/santral.db"))
            .err()
            .expect("must fail");
        assert!(
            err.to_string().contains("/proc/forbidden/santral.db"),
            "{err}"
        );
    }
}
