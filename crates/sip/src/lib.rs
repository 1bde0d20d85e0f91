//! santral's SIP stack: messages (a facade over rsip with a pre-parse normalizer), sans-IO
//! transactions and endpoint, dialogs, digest authentication, the registrar, the client side
//! (registration, outgoing calls), and a tokio driver with UDP and TCP transports.
//!
//! The protocol cores take `now` and never touch sockets or clocks; the [`driver`] owns those.
//! A server answering OPTIONS, entirely in virtual time:
//!
//! ```
//! use std::time::Instant;
//! use santral_sip::{Endpoint, EndpointConfig, Event, Message, TransportKind};
//!
//! let mut endpoint = Endpoint::new(EndpointConfig::default());
//! let options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKdoc;rport\r\n\
//! Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.2>;tag=1\r\nTo: <sip:127.0.0.1>\r\n\
//! Call-ID: doc@127.0.0.2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! let now = Instant::now();
//! endpoint.handle_input(
//!     now,
//!     TransportKind::Udp,
//!     "127.0.0.1:5060".parse().unwrap(),
//!     "127.0.0.2:5070".parse().unwrap(),
//!     options.as_bytes(),
//! );
//! let Some(Event::Request { id, request, .. }) = endpoint.poll_event() else { panic!() };
//! let answer = santral_sip::registrar::options_response(&request, "tag1");
//! endpoint.respond(now, id, answer).unwrap();
//! let transmit = endpoint.poll_transmit().unwrap();
//! assert_eq!(transmit.peer.remote.to_string(), "127.0.0.2:5070"); // rport honoured
//! assert_eq!(Message::parse(&transmit.bytes).unwrap().status(), Some(200));
//! // Timer J keeps the transaction 64·T1 to absorb retransmissions.
//! assert!(endpoint.poll_timeout().is_some());
//! ```

pub mod client;
pub mod dialog;
pub mod digest;
pub mod driver;
pub mod endpoint;
pub mod msg;
pub mod registrar;
pub mod transaction;
pub mod transport;
pub mod user_agent;

pub use endpoint::{Endpoint, EndpointConfig, EndpointError, Event, TransactionId, Transmit};
pub use msg::{Message, Method, ParseError};
pub use transaction::Timers;
pub use transport::{Peer, TransportKind};
