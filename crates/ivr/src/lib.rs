//! santral-ivr: the YAML flow language of santral's IVR — its model, loader and validator,
//! a sans-IO interpreter driven by events with virtual time, and the operator tools' engines
//! (simulator, flow tests, graphs).
//!
//! A host (the server, a test) loads the flows once, starts one [`Call`] per caller, feeds it
//! [`Event`]s with the current time and carries out the [`Command`]s it queues:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use santral_ivr::{Call, CallInfo, Command, Event, FlowSet, ValidationContext};
//!
//! let flow = "start: menu\nsteps:\n  menu:\n    menu:\n      prompts: [main_menu]\n      \
//!             choices: { \"1\": bye }\n      on_failure: bye\n  bye:\n    hangup: {}\n";
//! let sources = [("main".to_owned(), "main.yaml".to_owned(), flow.to_owned())];
//! let set = Arc::new(FlowSet::from_sources(&sources, &ValidationContext::default(), 1)?.set);
//! let info = CallInfo {
//!     call_id: "a84b4c76e66710".into(),
//!     caller: "+905551110001".into(),
//!     dialled: "1000".into(),
//!     language: "tr".into(),
//!     answered_at: jiff::Zoned::now(),
//! };
//! let mut call = Call::new(set, "main", info)?;
//! let now = Instant::now();
//! call.handle(Event::Answered, now);
//! assert!(matches!(call.poll_command(), Some(Command::Play { barge_in: true, .. })));
//! call.handle(Event::Digit('1'), now);
//! let commands: Vec<Command> = std::iter::from_fn(|| call.poll_command()).collect();
//! assert!(commands.contains(&Command::Hangup { reason: "flow ended".into() }));
//! assert!(call.is_finished());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Timers: after each event, wake the call with `Event::TimerFired` at `next_deadline()`.
//! Flow sets: [`FlowStore`] keeps the current set for new calls and reloads it (`watch`).

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
