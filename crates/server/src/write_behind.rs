//! Durable writes off the event loop. Call records and events are written on a thread of their
//! own, in batches (one SQLite transaction for whatever queued up meanwhile), so a call's task
//! never waits for the database and a WAL checkpoint's fsync never stalls SIP or media.
//! Reads first wait until every write queued before them is done (read-your-writes), so the
//! HTTP API shows a call the moment its task has saved it.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::storage::{
    AgentEvent, CallEvent, CallQuery, CallRecord, CallbackRequest, StorageError, Store,
};

/// A write waiting for the writer thread.
#[derive(Debug, Clone)]
pub enum PendingWrite {
    Call(Box<CallRecord>),
    CallEvent(CallEvent),
    AgentEvent(AgentEvent),
}

impl PendingWrite {
    /// Applies the write to `store` (the writer thread calls this inside a batch).
    pub fn apply(&self, store: &dyn Store) -> Result<(), StorageError> {
        match self {
            PendingWrite::Call(record) => store.save_call(record),
            PendingWrite::CallEvent(event) => store.add_call_event(event),
            PendingWrite::AgentEvent(event) => store.add_agent_event(event),
        }
    }
}

enum Job {
    Write(PendingWrite),
    /// Answered once every job queued before it is done.
    Barrier(mpsc::Sender<()>),
}

/// Most writes in one transaction.
const BATCH: usize = 512;

/// How long the writer gathers more writes after the first of a batch: under load, one
/// commit (and one wake-up) per 10 ms instead of one per call; a flush does not wait.
const GATHER: Duration = Duration::from_millis(10);
/// Queued writes at most; past this a write is done on the caller's thread (back-pressure
/// without losing anything).
const QUEUE: usize = 65_536;

/// A [`Store`] whose record and event writes happen on a writer thread.
pub struct WriteBehindStore {
    inner: Arc<dyn Store>,
    jobs: SyncSender<Job>,
    writer: Option<JoinHandle<()>>,
}

impl WriteBehindStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        let store = inner.clone();
        let writer = std::thread::Builder::new()
            .name("santral-db-writer".into())
            .spawn(move || write_loop(store.as_ref(), queue))
            .ok();
        WriteBehindStore {
            inner,
            jobs,
            writer,
        }
    }

    fn enqueue(&self, write: PendingWrite) -> Result<(), StorageError> {
        if self.writer.is_none() {
            return write.apply(self.inner.as_ref());
        }
        match self.jobs.try_send(Job::Write(write)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Job::Write(write)))
            | Err(TrySendError::Disconnected(Job::Write(write))) => {
                write.apply(self.inner.as_ref())
            }
            Err(_) => Ok(()),
        }
    }

    /// Waits (bounded) until every write queued so far is in the database.
    fn settle(&self) {
        let (done, wait) = mpsc::channel();
        if self.jobs.send(Job::Barrier(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for WriteBehindStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        let (closed, _) = mpsc::sync_channel(1);
        self.jobs = closed;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_loop(store: &dyn Store, queue: Receiver<Job>) {
    let mut batch: Vec<PendingWrite> = Vec::with_capacity(BATCH);
    let mut barriers: Vec<mpsc::Sender<()>> = Vec::new();
    loop {
        // Block for the first job, then take what else is queued, up to a batch.
        let first = match queue.recv_timeout(Duration::from_secs(3600)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let deadline = Instant::now() + GATHER;
        let mut next = Some(first);
        // Bounded: each round takes one job, and ends at BATCH jobs or the deadline.
        while let Some(job) = next.take() {
            match job {
                Job::Write(write) => batch.push(write),
                Job::Barrier(done) => barriers.push(done),
            }
            if batch.len() >= BATCH {
                break;
            }
            next = match queue.try_recv() {
                Ok(job) => Some(job),
                Err(_) if !barriers.is_empty() => None,
                Err(_) => deadline
                    .checked_duration_since(Instant::now())
                    .and_then(|left| queue.recv_timeout(left).ok()),
            };
        }
        let results = store.write_batch(&batch);
        for (write, result) in batch.iter().zip(results) {
            if let Err(err) = result {
                match write {
                    PendingWrite::Call(record) => {
                        tracing::error!(call_id = %record.call_id, %err, "call record not saved")
                    }
                    PendingWrite::CallEvent(event) => {
                        tracing::error!(call_id = %event.call_id, %err, "call event not saved")
                    }
                    PendingWrite::AgentEvent(event) => {
                        tracing::error!(agent = %event.agent, %err, "agent event not saved")
                    }
                }
            }
        }
        batch.clear();
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
    }
}

impl Store for WriteBehindStore {
    fn as_dyn(&self) -> &dyn Store {
        self
    }
    fn save_call(&self, record: &CallRecord) -> Result<(), StorageError> {
        self.enqueue(PendingWrite::Call(Box::new(record.clone())))
    }
    fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StorageError> {
        self.settle();
        self.inner.call(call_id)
    }
    fn calls(&self, query: &CallQuery) -> Result<Vec<CallRecord>, StorageError> {
        self.settle();
        self.inner.calls(query)
    }
    fn add_call_event(&self, event: &CallEvent) -> Result<(), StorageError> {
        self.enqueue(PendingWrite::CallEvent(event.clone()))
    }
    fn call_events(&self, call_id: &str) -> Result<Vec<CallEvent>, StorageError> {
        self.settle();
        self.inner.call_events(call_id)
    }
    fn add_agent_event(&self, event: &AgentEvent) -> Result<(), StorageError> {
        self.enqueue(PendingWrite::AgentEvent(event.clone()))
    }
    fn agent_events(&self, agent: &str, limit: u32) -> Result<Vec<AgentEvent>, StorageError> {
        self.settle();
        self.inner.agent_events(agent, limit)
    }
    // Callbacks and card status are rare and read back at once: written straight through.
    fn save_callback(&self, request: &CallbackRequest) -> Result<(), StorageError> {
        self.inner.save_callback(request)
    }
    fn remove_callback(&self, id: &str) -> Result<(), StorageError> {
        self.inner.remove_callback(id)
    }
    fn callbacks(&self) -> Result<Vec<CallbackRequest>, StorageError> {
        self.inner.callbacks()
    }
    fn set_card_status(
        &self,
        customer: &str,
        card_last4: &str,
        status: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        self.inner.set_card_status(customer, card_last4, status, at)
    }
    fn card_status(
        &self,
        customer: &str,
        card_last4: &str,
    ) -> Result<Option<String>, StorageError> {
        self.inner.card_status(customer, card_last4)
    }
    fn flush(&self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteStore;

    fn record(call_id: &str, ended: Option<i64>) -> CallRecord {
        CallRecord {
            call_id: call_id.into(),
            caller: "05321234567".into(),
            dialled: "1000".into(),
            started_at: 1,
            ended_at: ended,
            ..CallRecord::default()
        }
    }

    #[test]
    fn writes_land_in_order_and_reads_see_them() {
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let store = WriteBehindStore::new(sqlite.clone());
        for n in 0..900 {
            store.save_call(&record(&format!("c{n}"), None)).unwrap();
            // The later write of the same record must win (start, then end).
            store.save_call(&record(&format!("c{n}"), Some(n))).unwrap();
        }
        let calls = store
            .calls(&CallQuery {
                limit: Some(1_000),
                ..CallQuery::default()
            })
            .unwrap();
        assert_eq!(calls.len(), 900);
        assert!(
            calls.iter().all(|c| c.ended_at.is_some()),
            "last write wins"
        );
        assert_eq!(store.call("c7").unwrap().unwrap().ended_at, Some(7));
    }

    #[test]
    fn dropping_the_store_writes_everything_queued() {
        let path = tempfile::tempdir().unwrap();
        let db = path.path().join("t.db");
        {
            let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
            let store = WriteBehindStore::new(sqlite);
            for n in 0..500 {
                store.save_call(&record(&format!("d{n}"), Some(n))).unwrap();
            }
        }
        let reopened = SqliteStore::open(&db).unwrap();
        let calls = reopened
            .calls(&CallQuery {
                limit: Some(1_000),
                ..CallQuery::default()
            })
            .unwrap();
        assert_eq!(calls.len(), 500);
    }
}
