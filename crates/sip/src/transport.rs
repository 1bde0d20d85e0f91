//! Transport vocabulary shared by the sans-IO core and the tokio driver, and the stream framer
//! (RFC 3261 §18.3) that cuts a TCP byte stream into messages.
//!
//! Stream transports (TCP today; TLS and WebSocket later) differ only in how bytes reach the
//! framer, so the driver's connection code is generic over `AsyncRead + AsyncWrite`.

use std::fmt;
use std::net::SocketAddr;

use crate::msg::{Limits, find_header_end};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    /// Reliable transports need no retransmission timers (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Both ends of a message's path: where it came in (or goes out) and from (or to) whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("header section exceeds {0} bytes")]
    HeaderTooLarge(usize),
    #[error("message exceeds {0} bytes")]
    MessageTooLarge(usize),
    #[error("missing or invalid Content-Length on a stream transport")]
    ContentLength,
}

/// Accumulates stream bytes and yields complete messages, framed by Content-Length.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buffer: Vec<u8>,
    limits: Limits,
}

impl StreamFramer {
    pub fn new(limits: Limits) -> StreamFramer {
        StreamFramer {
            buffer: Vec::new(),
            limits,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. An error means the
    /// stream cannot be resynchronised and the connection should be closed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        // CRLF keep-alives between messages (RFC 5626) are skipped.
        let skip = self
            .buffer
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(self.buffer.len());
        self.buffer.drain(..skip);
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let Some((header_len, body_start)) = find_header_end(&self.buffer) else {
            if self.buffer.len() > self.limits.max_message_size {
                return Err(FramingError::HeaderTooLarge(self.limits.max_message_size));
            }
            return Ok(None);
        };
        let length =
            content_length(&self.buffer[..header_len]).ok_or(FramingError::ContentLength)?;
        let total = body_start + length;
        if total > self.limits.max_message_size {
            return Err(FramingError::MessageTooLarge(self.limits.max_message_size));
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let message: Vec<u8> = self.buffer.drain(..total).collect();
        Ok(Some(message))
    }
}

/// Content-Length from a raw header section (full or compact name, folding ignored).
fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    let mut found = None;
    for line in text.split('\n').skip(1) {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            found = Some(value.trim().parse().ok()?);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str) -> String {
        format!(
            "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nl: {}\r\n\r\n{}",
            body.len(),
            body
        )
    }

    #[test]
    fn many_messages_in_one_segment() {
        let mut f = StreamFramer::new(Limits::default());
        let both = format!("{}\r\n\r\n{}", msg("abc"), msg(""));
        f.push(both.as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), msg("abc").as_bytes());
        assert_eq!(f.next_message().unwrap().unwrap(), msg("").as_bytes());
        assert_eq!(f.next_message().unwrap(), None);
    }

    #[test]
    fn one_message_over_many_segments() {
        let mut f = StreamFramer::new(Limits::default());
        let whole = msg("hello world");
        for chunk in whole.as_bytes().chunks(7) {
            assert_eq!(f.next_message().unwrap(), None);
            f.push(chunk);
        }
        assert_eq!(f.next_message().unwrap().unwrap(), whole.as_bytes());
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::ContentLength));
    }
}
