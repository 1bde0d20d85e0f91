//! Callback persistence. The server implements [`CallbackStore`] over its database so queued
//! callbacks survive a restart; [`MemoryCallbackStore`] serves tests and the simulator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::SkillRequirement;
use crate::id::CallId;
use crate::input::CallerData;

/// What is needed to put a callback back in line after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub call: CallId,
    pub queue: String,
    pub priority: u8,
    /// Place in line (global join order); restored callbacks keep their relative order.
    pub seq: u64,
    /// How long the caller had waited when asking; a restored callback counts its age from this.
    pub waited_secs: u64,
    pub skills: Vec<SkillRequirement>,
    pub language: Option<String>,
    pub caller: CallerData,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("callback store: {0}")]
pub struct CallbackStoreError(pub String);

/// Durable storage for callback requests.
pub trait CallbackStore: Send {
    fn save(&mut self, record: &CallbackRecord) -> Result<(), CallbackStoreError>;
    fn remove(&mut self, call: CallId) -> Result<(), CallbackStoreError>;
    fn load_all(&self) -> Result<Vec<CallbackRecord>, CallbackStoreError>;
}

/// Keeps callbacks in memory (lost on restart; for tests and simulation).
#[derive(Debug, Clone, Default)]
pub struct MemoryCallbackStore {
    records: BTreeMap<CallId, CallbackRecord>,
}

impl MemoryCallbackStore {
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl CallbackStore for MemoryCallbackStore {
    fn save(&mut self, record: &CallbackRecord) -> Result<(), CallbackStoreError> {
        self.records.insert(record.call, record.clone());
        Ok(())
    }
    fn remove(&mut self, call: CallId) -> Result<(), CallbackStoreError> {
        self.records.remove(&call);
        Ok(())
    }
    fn load_all(&self) -> Result<Vec<CallbackRecord>, CallbackStoreError> {
        Ok(self.records.values().cloned().collect())
    }
}
