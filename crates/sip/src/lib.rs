//! santral's SIP stack: messages (a facade over rsip with a pre-parse normalizer), sans-IO
//! transactions and endpoint, dialogs, digest authentication, the registrar, the client side
//! (registration, outgoing calls), and a tokio driver with UDP and TCP transports.

pub mod client;
pub mod dialog;
pub mod digest;
pub mod driver;
pub mod endpoint;
pub mod msg;
pub mod registrar;
pub mod transaction;
pub mod transport;

pub use endpoint::{Endpoint, EndpointConfig, EndpointError, Event, TransactionId, Transmit};
pub use msg::{Message, Method, ParseError};
pub use transaction::Timers;
pub use transport::{Peer, TransportKind};
