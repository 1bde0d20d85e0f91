//! santral-ivr: the YAML flow language of santral's IVR — its model, loader and validator,
//! a sans-IO interpreter driven by events with virtual time, and the operator tools' engines
//! (simulator, flow tests, graphs).

pub mod located;
pub mod model;

pub use located::{Located, Position};
pub mod condition;
pub mod diagnostic;
pub mod flowset;
pub mod hours;
pub mod speech;
pub mod template;
pub mod validator;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use flowset::{Flow, FlowSet, FlowStore, FlowWatcher, Loaded};
pub use validator::ValidationContext;
pub mod customers;
pub mod interpreter;

pub use interpreter::{Call, CallInfo, Command, Event};
pub mod flowtest;
pub mod graph;
pub mod simulator;
