//! SIP messages: a pre-parse normalizer, limits, typed accessors for the hot headers, builders and
//! serialisation.
//!
//! rsip 0.4 is used for the Request-URI (`rsip::Uri`) and offered to consumers through
//! [`Message::to_rsip`]; the header section is normalised here first because rsip rejects folded
//! lines and whitespace before the colon, and leaves compact names (`v:`, `i:` …) untyped. Header
//! values are kept exactly as received (only folding is undone), so digest responses can be checked
//! against the raw `uri=` string.

use std::fmt;

use bytes::Bytes;

/// Bounds applied before anything else looks at the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message, header section plus body.
    pub max_message_size: usize,
    /// Header fields after unfolding.
    pub max_headers: usize,
    /// One (unfolded) header line or the start line.
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 128,
            max_line_length: 8 * 1024,
        }
    }
}

/// Why bytes are not a SIP message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("header section is not terminated by an empty line")]
    Unterminated,
    #[error("header section is not UTF-8")]
    NotUtf8,
    #[error("invalid start line: {0}")]
    StartLine(String),
    #[error("SIP version {0} not supported")]
    Version(String),
    #[error("invalid Request-URI: {0}")]
    RequestUri(String),
    #[error("invalid header line: {0}")]
    HeaderLine(String),
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("invalid {name} header: {reason}")]
    Header { name: &'static str, reason: String },
    #[error("body shorter than Content-Length ({declared} declared, {actual} present)")]
    BodyTooShort { declared: usize, actual: usize },
}

impl ParseError {
    /// The response status a server gives for this error when a response can be formed.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version(_) => 505,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }
}

/// SIP request methods; unknown tokens are kept (RFC 3261 §8.2.1 answers them 405/501).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Refer,
    Notify,
    Subscribe,
    Message,
    Update,
    Prack,
    Publish,
    Extension(String),
}

impl Method {
    pub fn parse(token: &str) -> Result<Method, ParseError> {
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return Err(ParseError::StartLine(format!("invalid method {token:?}")));
        }
        // Methods are case-sensitive (RFC 3261 §7.1).
        Ok(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        /// The Request-URI as received (digest `uri=` is compared with this).
        uri: String,
    },
    Response {
        code: u16,
        reason: String,
    },
}

/// One header field: canonical name (compact forms expanded), value as received minus folding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// The top Via, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, … upper-cased.
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        let bad = |reason: &str| ParseError::Header {
            name: "Via",
            reason: reason.to_string(),
        };
        // LWS is allowed around the slashes of sent-protocol (RFC 4475 wsinv); the common
        // case has none and is not copied.
        let value = value.trim();
        let needs_compacting = value.as_bytes().windows(2).any(|w| {
            (w[0] == b'/' && w[1].is_ascii_whitespace())
                || (w[1] == b'/' && w[0].is_ascii_whitespace())
        });
        let compact: std::borrow::Cow<'_, str> = if needs_compacting {
            std::borrow::Cow::Owned(compact_slashes(value))
        } else {
            std::borrow::Cow::Borrowed(value)
        };
        let (protocol, rest) = compact
            .split_once([' ', '\t'])
            .ok_or_else(|| bad("no sent-by"))?;
        let mut parts = protocol.split('/').map(str::trim);
        let (name, version, transport) = (parts.next(), parts.next(), parts.next());
        match (name, version, transport, parts.next()) {
            (Some(n), Some(v), Some(t), None)
                if n.eq_ignore_ascii_case("SIP") && v == "2.0" && !t.is_empty() =>
            {
                let mut pieces = split_outside_quotes(rest, ';').into_iter();
                let sent_by = pieces.next().unwrap_or_default().trim();
                let (host, port) = split_host_port(sent_by).ok_or_else(|| bad("bad sent-by"))?;
                let params = pieces.map(parse_param).collect::<Result<Vec<_>, _>>()?;
                Ok(Via {
                    transport: t.to_ascii_uppercase(),
                    host,
                    port,
                    params,
                })
            }
            _ => Err(bad("bad protocol")),
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `Some(None)` when `rport` is present without a value (the client asks for it).
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host:port` as the client wrote it (port defaulted to 5060 when absent).
    pub fn sent_by(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(5060))
    }
}

/// Removes whitespace next to '/' (sent-protocol with LWS).
fn compact_slashes(value: &str) -> String {
    let mut compact = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            let mut lookahead = chars.clone();
            while lookahead.peek().is_some_and(|n| n.is_whitespace()) {
                lookahead.next();
            }
            if compact.ends_with('/') || lookahead.peek() == Some(&'/') {
                chars = lookahead;
                continue;
            }
        }
        compact.push(c);
    }
    compact
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// `"display" <uri>;params` or `uri;params` (From, To, Contact, Route, Refer-To).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, ParseError> {
        let bad = |reason: &str| ParseError::Header {
            name: "name-addr",
            reason: reason.to_string(),
        };
        let value = value.trim();
        let (display, uri, rest) = if let Some(open) = find_outside_quotes(value, '<') {
            let close = value[open..]
                .find('>')
                .map(|i| i + open)
                .ok_or_else(|| bad("missing '>'"))?;
            let raw_display = value[..open].trim();
            if raw_display.starts_with('"') {
                if raw_display.len() < 2 || !raw_display.ends_with('"') {
                    return Err(bad("unterminated quoted display name"));
                }
            } else if !raw_display
                .bytes()
                .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
            {
                // An unquoted display name is a sequence of tokens (RFC 4475 baddn).
                return Err(bad("display name needs quotes"));
            }
            let display = raw_display.trim_matches('"').trim();
            let inner = &value[open + 1..close];
            if inner.trim() != inner {
                return Err(bad("whitespace inside <>"));
            }
            (
                (!display.is_empty()).then(|| display.to_string()),
                value[open + 1..close].trim().to_string(),
                &value[close + 1..],
            )
        } else {
            if value.contains('"') || value.contains('>') {
                return Err(bad("unbalanced quotes or brackets"));
            }
            // addr-spec without <> cannot carry URI headers or commas (RFC 4475 regbadct).
            if value.contains('?') || value.contains(',') {
                return Err(bad("URI with headers must be in <>"));
            }
            // Without angle brackets, parameters belong to the header, not the URI.
            match value.find(';') {
                Some(i) => (None, value[..i].trim().to_string(), &value[i..]),
                None => (None, value.to_string(), ""),
            }
        };
        if uri.is_empty() || uri.contains(' ') {
            return Err(bad("bad URI"));
        }
        let params = split_outside_quotes(rest, ';')
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .map(parse_param)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_string(), value.map(str::to_string)));
    }

    /// The user part of a `sip:`/`sips:` URI.
    pub fn user(&self) -> Option<&str> {
        uri_user(&self.uri)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            write!(f, "\"{display}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A Contact header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactValue {
    /// `Contact: *` (REGISTER with Expires: 0 removes every binding).
    Star,
    Addr(NameAddr),
}

/// The user part of a `sip:user@host` URI.
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("SIP:"))?;
    let at = rest.find('@')?;
    let user = &rest[..at];
    Some(user.split(':').next().unwrap_or(user))
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

fn parse_param(text: &str) -> Result<(String, Option<String>), ParseError> {
    let text = text.trim();
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
        None => (text, None),
    };
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(ParseError::Header {
            name: "parameter",
            reason: format!("bad parameter {text:?}"),
        });
    }
    Ok((name.to_string(), value))
}

fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = format!("[{}]", &rest[..close]);
        let after = &rest[close + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.trim().parse().ok()?))),
            None if after.trim().is_empty() => Some((host, None)),
            None => None,
        };
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h.trim(), Some(p.trim().parse::<u16>().ok()?)),
        None => (text.trim(), None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return None;
    }
    Some((host.to_string(), port))
}

/// RFC 3261 token characters.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn find_outside_quotes(text: &str, wanted: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == wanted && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits on `sep` outside quoted strings and angle brackets (no allocation per piece).
pub fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let sep = sep as u32 as u8;
    let bytes = text.as_bytes();
    if !bytes.contains(&sep) {
        return vec![text];
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut angle = 0u32;
    // Every delimiter is ASCII, so byte positions are char boundaries.
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle += 1,
            b'>' if !quoted => angle = angle.saturating_sub(1),
            _ if b == sep && !quoted && angle == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

const COMPACT_NAMES: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

const CANONICAL_NAMES: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Expands compact forms and fixes the case of well-known names.
pub fn canonical_name(name: &str) -> String {
    if name.len() == 1
        && let Some((_, full)) = COMPACT_NAMES
            .iter()
            .find(|(short, _)| short.eq_ignore_ascii_case(name))
    {
        return (*full).to_string();
    }
    // Most peers already write canonical names: an exact match is a length check and memcmp.
    if let Some(known) = CANONICAL_NAMES.iter().find(|known| **known == name) {
        return (*known).to_string();
    }
    CANONICAL_NAMES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map(|known| (*known).to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Headers whose comma-separated values are independent entries (RFC 3261 §7.3.1).
fn is_list_header(name: &str) -> bool {
    ["Via", "Contact", "Route", "Record-Route"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Single-valued headers that must not appear twice with different values.
const SINGLE_HEADERS: &[&str] = &[
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Max-Forwards",
    "Content-Length",
    "Expires",
];

/// Finds where the header section ends: returns (header_len, body_start).
pub fn find_header_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

impl Message {
    /// Parses one datagram or one framed stream message with the default limits.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        Message::parse_with(bytes, &Limits::default())
    }

    pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<Message, ParseError> {
        if bytes.len() > limits.max_message_size {
            return Err(ParseError::TooLarge {
                limit: limits.max_message_size,
            });
        }
        // Keep-alive CRLFs before a message are allowed (RFC 5626 §3.5.1).
        let start = bytes
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(bytes.len());
        let bytes = &bytes[start..];
        let (header_len, body_start) = find_header_end(bytes).ok_or(ParseError::Unterminated)?;
        let head = std::str::from_utf8(&bytes[..header_len]).map_err(|_| ParseError::NotUtf8)?;
        // A CR anywhere but before LF would let a header smuggle a line into what we echo.
        if head
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\r' && w[1] != b'\n')
        {
            return Err(ParseError::HeaderLine("bare CR".into()));
        }
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start_line = lines.next().unwrap_or_default();
        if start_line.len() > limits.max_line_length {
            return Err(ParseError::LineTooLong {
                limit: limits.max_line_length,
            });
        }
        let start = parse_start_line(start_line)?;

        // Unfold: a line starting with whitespace continues the previous header.
        let mut headers: Vec<Header> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().ok_or_else(|| {
                    ParseError::HeaderLine("continuation before any header".into())
                })?;
                last.value.push(' ');
                last.value.push_str(line.trim());
                if last.value.len() > limits.max_line_length {
                    return Err(ParseError::LineTooLong {
                        limit: limits.max_line_length,
                    });
                }
                continue;
            }
            if line.len() > limits.max_line_length {
                return Err(ParseError::LineTooLong {
                    limit: limits.max_line_length,
                });
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::HeaderLine(truncate(line)))?;
            let name = name.trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::HeaderLine(truncate(line)));
            }
            if headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            headers.push(Header {
                name: canonical_name(name),
                value: value.trim().to_string(),
            });
        }

        let body = &bytes[body_start..];
        let mut message = Message {
            start,
            headers,
            body: Bytes::new(),
        };
        let body = match message.content_length()? {
            Some(declared) if declared > body.len() => {
                return Err(ParseError::BodyTooShort {
                    declared,
                    actual: body.len(),
                });
            }
            // Extra bytes after Content-Length in a datagram are discarded (RFC 3261 §18.3).
            Some(declared) => &body[..declared],
            None => body,
        };
        message.body = Bytes::copy_from_slice(body);
        message.validate()?;
        Ok(message)
    }

    /// Structural checks every message we act on must pass.
    fn validate(&self) -> Result<(), ParseError> {
        // One pass: the first value of each single-valued header, any different repeat is an error.
        let mut first: [Option<&str>; SINGLE_HEADERS.len()] = [None; SINGLE_HEADERS.len()];
        for h in &self.headers {
            let Some(i) = SINGLE_HEADERS
                .iter()
                .position(|n| n.eq_ignore_ascii_case(&h.name))
            else {
                continue;
            };
            match first[i] {
                None => first[i] = Some(&h.value),
                Some(seen) if seen != h.value => {
                    return Err(ParseError::Header {
                        name: SINGLE_HEADERS[i],
                        reason: "appears more than once".into(),
                    });
                }
                Some(_) => {}
            }
        }
        self.top_via()?;
        if self.call_id().is_none() {
            return Err(ParseError::Missing("Call-ID"));
        }
        self.from()?;
        self.to()?;
        let (_, cseq_method) = self.cseq()?;
        if let StartLine::Request { method, .. } = &self.start {
            if *method != cseq_method {
                return Err(ParseError::Header {
                    name: "CSeq",
                    reason: format!("method {cseq_method} does not match {method}"),
                });
            }
            // A From without tag (and a Via without branch) is an RFC 2543 request, which a
            // UAS still serves (RFC 3261 §8.2.2.2 and §17.2.3; RFC 4475 inv2543).
            self.max_forwards()?;
        }
        self.expires()?;
        self.contacts()?;
        if let Some(date) = self.header("Date") {
            // RFC 3261 §20.17: GMT is the only time zone (RFC 4475 baddate).
            if !date.trim_end().ends_with("GMT") {
                return Err(ParseError::Header {
                    name: "Date",
                    reason: "time zone must be GMT".into(),
                });
            }
        }
        Ok(())
    }

    /// A request with the mandatory headers left for the caller to add.
    pub fn request(method: Method, uri: impl Into<String>) -> Message {
        Message {
            start: StartLine::Request {
                method,
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `request` with Via, From, To, Call-ID and CSeq copied (RFC 3261 §8.2.6.2).
    pub fn response_to(request: &Message, code: u16, reason: &str) -> Message {
        let headers = request
            .headers
            .iter()
            .filter(|h| {
                ["Via", "From", "To", "Call-ID", "CSeq"]
                    .iter()
                    .any(|n| h.name.eq_ignore_ascii_case(n))
            })
            .cloned()
            .collect();
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Bytes::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (case-insensitive name; compact forms were expanded at parse).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every entry of a list header, comma-separated values split apart.
    pub fn header_entries(&self, name: &str) -> Vec<String> {
        let split = is_list_header(name);
        let mut out = Vec::new();
        for value in self.header_all(name) {
            if split {
                out.extend(
                    split_outside_quotes(value, ',')
                        .into_iter()
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty()),
                );
            } else {
                out.push(value.to_string());
            }
        }
        out
    }

    pub fn push_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header {
            name: canonical_name(name),
            value: value.into(),
        });
    }

    /// Replaces every occurrence of `name` by one field.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .headers
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.headers[i].value = value;
                let mut seen = 0;
                self.headers.retain(|h| {
                    if h.name.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push_header(name, value),
        }
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    /// Puts a header before all others (a new top Via, Route …).
    pub fn prepend_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.insert(
            0,
            Header {
                name: canonical_name(name),
                value: value.into(),
            },
        );
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let first = self.header("Via").ok_or(ParseError::Missing("Via"))?;
        let entry = split_outside_quotes(first, ',')
            .into_iter()
            .next()
            .unwrap_or_default();
        Via::parse(entry)
    }

    /// Rewrites the top Via (received/rport stamping).
    pub fn set_top_via(&mut self, via: &Via) {
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case("Via"))
        {
            let mut value = via.to_string();
            for entry in split_outside_quotes(&h.value, ',').iter().skip(1) {
                value.push_str(", ");
                value.push_str(entry.trim());
            }
            h.value = value;
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID").filter(|v| !v.is_empty())
    }

    pub fn cseq(&self) -> Result<(u32, Method), ParseError> {
        let value = self.header("CSeq").ok_or(ParseError::Missing("CSeq"))?;
        let bad = |reason: &str| ParseError::Header {
            name: "CSeq",
            reason: reason.to_string(),
        };
        let mut parts = value.split_whitespace();
        let number = parts
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n < (1 << 31))
            .ok_or_else(|| bad("bad sequence number"))?;
        let method = Method::parse(parts.next().ok_or_else(|| bad("no method"))?)
            .map_err(|_| bad("bad method"))?;
        if parts.next().is_some() {
            return Err(bad("trailing text"));
        }
        Ok((number, method))
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.header("From").ok_or(ParseError::Missing("From"))?)
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.header("To").ok_or(ParseError::Missing("To"))?)
    }

    pub fn from_tag(&self) -> Option<String> {
        self.from().ok().and_then(|f| f.tag().map(str::to_string))
    }

    pub fn to_tag(&self) -> Option<String> {
        self.to().ok().and_then(|t| t.tag().map(str::to_string))
    }

    /// Adds a tag to To when there is none (UAS answering a dialog-creating request).
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Ok(mut to) = self.to()
            && to.tag().is_none()
        {
            to.set_param("tag", Some(tag));
            self.set_header("To", to.to_string());
        }
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.header("Max-Forwards") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u8>()
                .map(Some)
                .map_err(|_| ParseError::Header {
                    name: "Max-Forwards",
                    reason: format!("{v:?} is not 0..255"),
                }),
        }
    }

    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.header("Expires") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(|n| Some(n.min(u32::MAX as u64) as u32))
                .map_err(|_| ParseError::Header {
                    name: "Expires",
                    reason: format!("{v:?} is not a number of seconds"),
                }),
        }
    }

    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.header("Content-Length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| ParseError::Header {
                    name: "Content-Length",
                    reason: format!("{v:?} is not a length"),
                }),
        }
    }

    pub fn contacts(&self) -> Result<Vec<ContactValue>, ParseError> {
        self.header_entries("Contact")
            .iter()
            .map(|entry| {
                if entry.trim() == "*" {
                    Ok(ContactValue::Star)
                } else {
                    NameAddr::parse(entry).map(ContactValue::Addr)
                }
            })
            .collect()
    }

    /// The rsip view of this message, for consumers that want rsip's typed headers.
    pub fn to_rsip(&self) -> Result<rsip::SipMessage, rsip::Error> {
        rsip::SipMessage::try_from(self.to_bytes())
    }

    /// Serialises with a correct Content-Length.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.reserve(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers {
            if h.name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            // Values built by the application never break the framing.
            if h.value.bytes().any(|b| b == b'\r' || b == b'\n') {
                out.extend(
                    h.value
                        .bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            } else {
                out.extend_from_slice(h.value.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        out.extend_from_slice(&self.body);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// A short label for logs: `INVITE sip:…` or `200 OK`.
    pub fn summary(&self) -> String {
        match &self.start {
            StartLine::Request { method, uri } => format!("{method} {uri}"),
            StartLine::Response { code, reason } => format!("{code} {reason}"),
        }
    }
}

fn truncate(line: &str) -> String {
    line.chars().take(60).collect()
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest
            .split_once(' ')
            .ok_or_else(|| ParseError::StartLine(truncate(line)))?;
        if version != "2.0" {
            return Err(ParseError::Version(version.to_string()));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = code
            .parse::<u16>()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| ParseError::StartLine(format!("bad status code {code:?}")))?;
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (method, uri, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(u), Some(v), None) => (m, u, v),
        _ => return Err(ParseError::StartLine(truncate(line))),
    };
    let method = Method::parse(method)?;
    match version.strip_prefix("SIP/") {
        Some("2.0") => {}
        Some(other) => return Err(ParseError::Version(other.to_string())),
        None => return Err(ParseError::StartLine(truncate(line))),
    }
    validate_request_uri(uri)?;
    Ok(StartLine::Request {
        method,
        uri: uri.to_string(),
    })
}

fn validate_request_uri(uri: &str) -> Result<(), ParseError> {
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| ParseError::RequestUri(truncate(uri)))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        || rest.is_empty()
    {
        return Err(ParseError::RequestUri(truncate(uri)));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        if uri.bytes().any(|b| b == b'<' || b == b'>' || b == b'"') {
            return Err(ParseError::RequestUri(truncate(uri)));
        }
        // Escaped headers are not allowed in a Request-URI (RFC 4475 escruri); a '?' in the
        // user part is legal (intmeth).
        let host_part = uri.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
        if host_part.contains('?') {
            return Err(ParseError::RequestUri("URI headers in Request-URI".into()));
        }
        // rsip 0.4 does not take an IPv6 reference as a host (`sip:1000@[::1]:5060`): check
        // the literal here and the rest of the URI through rsip with a name in its place.
        let reference =
            ipv6_reference(host_part).map_err(|()| ParseError::RequestUri(truncate(uri)))?;
        let checked = match reference {
            Some(literal) => {
                literal
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| ParseError::RequestUri(truncate(uri)))?;
                uri.replacen(&format!("[{literal}]"), "ipv6.invalid", 1)
            }
            None => uri.to_string(),
        };
        rsip::Uri::try_from(checked.as_str()).map_err(|e| ParseError::RequestUri(e.to_string()))?;
    }
    Ok(())
}

/// The address inside `[...]` when a URI's host part starts with an IPv6 reference (then only
/// a port or parameters may follow it).
fn ipv6_reference(host_part: &str) -> Result<Option<&str>, ()> {
    let Some(rest) = host_part.strip_prefix('[') else {
        return Ok(None);
    };
    let (literal, after) = rest.split_once(']').ok_or(())?;
    if after.is_empty() || after.starts_with([':', ';']) {
        Ok(Some(literal))
    } else {
        Err(())
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:2001@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:2001@127.0.0.1>\r\n\
From: \"Alice\" <sip:alice@127.0.0.2>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@127.0.0.2\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@127.0.0.2>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_hot_headers() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:2001@127.0.0.1"));
        let via = m.top_via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(via.rport(), Some(None));
        assert_eq!(via.sent_by(), "127.0.0.2:5060");
        assert_eq!(m.call_id(), Some("a84b4c76e66710@127.0.0.2"));
        assert_eq!(m.cseq().unwrap(), (314159, Method::Invite));
        assert_eq!(m.from_tag().as_deref(), Some("1928301774"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(&m.body[..], b"v=0\n");
        assert_eq!(m.from().unwrap().display.as_deref(), Some("Alice"));
    }

    #[test]
    fn ipv6_request_uris_are_taken_and_bad_literals_refused() {
        for uri in [
            "sip:1000@[::1]:5060",
            "sip:1000@[::1]",
            "sip:[2001:db8::10];transport=udp",
        ] {
            let text = INVITE.replacen("sip:2001@127.0.0.1 SIP", &format!("{uri} SIP"), 1);
            let m = Message::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(m.request_uri(), Some(uri));
        }
        assert_eq!(uri_user("sip:1000@[::1]:5060"), Some("1000"));
        for bad in ["sip:1000@[::1", "sip:1000@[zz::1]:5060", "sip:1000@[::1]x"] {
            let text = INVITE.replacen("sip:2001@127.0.0.1 SIP", &format!("{bad} SIP"), 1);
            assert!(
                matches!(
                    Message::parse(text.as_bytes()),
                    Err(ParseError::RequestUri(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn normalizes_folding_compact_names_and_space_before_colon() {
        let text = "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKx\r\n\
i : abc\r\n\
f: <sip:a@127.0.0.2>\r\n ;tag=1\r\n\
t: <sip:b@127.0.0.1>\r\n\
CSeq\t: 1 OPTIONS\r\n\
l: 0\r\n\r\n";
        let m = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(m.call_id(), Some("abc"));
        assert_eq!(m.from_tag().as_deref(), Some("1"));
        assert!(m.headers.iter().any(|h| h.name == "Via"));
        let again = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(again.call_id(), Some("abc"));
    }

    #[test]
    fn rejects_short_body_bad_version_and_limits() {
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert!(matches!(
            Message::parse(short.as_bytes()),
            Err(ParseError::BodyTooShort { .. })
        ));
        let v7 = INVITE.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert_eq!(Message::parse(v7.as_bytes()).unwrap_err().status(), 505);
        let big = vec![b'a'; 70_000];
        assert!(matches!(
            Message::parse(&big),
            Err(ParseError::TooLarge { .. })
        ));
        let many = INVITE.replace("Max-Forwards: 70\r\n", &"X-A: 1\r\n".repeat(200));
        assert!(matches!(
            Message::parse(many.as_bytes()),
            Err(ParseError::TooManyHeaders { .. })
        ));
        let mismatch = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        assert!(Message::parse(mismatch.as_bytes()).is_err());
    }

    #[test]
    fn bare_cr_in_a_header_is_rejected() {
        let text = INVITE.replace(
            "Call-ID: a84b4c76e66710@127.0.0.2",
            "Call-ID: x\rInjected: 1",
        );
        assert!(matches!(
            Message::parse(text.as_bytes()),
            Err(ParseError::HeaderLine(_))
        ));
    }

    #[test]
    fn response_copies_dialog_headers() {
        let req = Message::parse(INVITE.as_bytes()).unwrap();
        let mut resp = Message::response_to(&req, 180, "Ringing");
        resp.set_to_tag("xyz");
        let parsed = Message::parse(&resp.to_bytes()).unwrap();
        assert_eq!(parsed.status(), Some(180));
        assert_eq!(parsed.to_tag().as_deref(), Some("xyz"));
        assert_eq!(parsed.call_id(), req.call_id());
        assert!(parsed.to_rsip().is_ok());
    }

    #[test]
    fn contact_lists_and_star() {
        let text = INVITE.replace(
            "Contact: <sip:alice@127.0.0.2>",
            "Contact: \"A, B\" <sip:a@127.0.0.2>;expires=60, sip:b@127.0.0.3;q=0.5",
        );
        let m = Message::parse(text.as_bytes()).unwrap();
        let contacts = m.contacts().unwrap();
        assert_eq!(contacts.len(), 2);
        match &contacts[0] {
            ContactValue::Addr(a) => {
                assert_eq!(a.param("expires"), Some(Some("60")));
                assert_eq!(a.display.as_deref(), Some("A, B"));
            }
            ContactValue::Star => panic!("not star"),
        }
        let star = INVITE.replace("Contact: <sip:alice@127.0.0.2>", "Contact: *");
        assert_eq!(
            Message::parse(star.as_bytes()).unwrap().contacts().unwrap(),
            vec![ContactValue::Star]
        );
    }
}
