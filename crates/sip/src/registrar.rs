//! The sans-IO registrar (RFC 3261 §10) with digest authentication (RFC 8760), nonce expiry and
//! `stale=true`, nonce-count replay protection, and failure throttling per source address.
//!
//! The same challenge is sent whether the user exists or not, and unknown users are checked
//! against a dummy password, so responses do not reveal which accounts exist.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::digest::{Algorithm, Challenge, Credentials};
use crate::msg::{ContactValue, Message, NameAddr};
use crate::transport::Peer;

#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub realm: String,
    /// Offered in this order, one challenge header each.
    pub algorithms: Vec<Algorithm>,
    pub nonce_ttl: Duration,
    /// Failed authentications per source address within `failure_window` that trip a lockout.
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts_per_account: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "santral".into(),
            algorithms: vec![Algorithm::Md5],
            nonce_ttl: Duration::from_secs(300),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts_per_account: 10,
        }
    }
}

/// One registered contact of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub contact: NameAddr,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from: requests to this contact go there (NAT-friendly).
    pub source: Peer,
}

/// What a REGISTER (or an authentication check) led to, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No (usable) credentials: a challenge was sent.
    Challenged {
        stale: bool,
    },
    /// Credentials were wrong (or replayed); a fresh challenge was sent.
    Failed {
        user: String,
    },
    /// This failure tripped the lockout for the source address.
    LockedOut {
        source: IpAddr,
    },
    /// The source is locked out; refused without looking at credentials.
    Refused {
        source: IpAddr,
    },
    Registered {
        user: String,
        contacts: usize,
    },
    Rejected {
        status: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub response: Message,
    pub outcome: Outcome,
}

#[derive(Debug)]
struct NonceState {
    issued: Instant,
    last_nc: u32,
}

#[derive(Debug, Default)]
struct FailureRecord {
    times: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

const MAX_NONCES: usize = 100_000;
const DUMMY_PASSWORD: &str = "\u{0}santral-no-such-user";

pub struct Registrar {
    config: RegistrarConfig,
    accounts: HashMap<String, String>,
    nonces: HashMap<String, NonceState>,
    nonce_order: VecDeque<String>,
    bindings: HashMap<String, Vec<Binding>>,
    failures: HashMap<IpAddr, FailureRecord>,
}

/// Allowed methods, advertised in OPTIONS answers and 405s.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, REFER, NOTIFY";
pub const ACCEPT: &str = "application/sdp";
pub const SUPPORTED: &str = "replaces, norefersub";

/// RFC 3261 §11: 200 OK to OPTIONS with our capabilities.
pub fn options_response(request: &Message, to_tag: &str) -> Message {
    let mut response = Message::response_to(request, 200, "OK");
    response.set_to_tag(to_tag);
    response.push_header("Allow", ALLOW);
    response.push_header("Accept", ACCEPT);
    response.push_header("Supported", SUPPORTED);
    response
}

impl Registrar {
    pub fn new(
        config: RegistrarConfig,
        accounts: impl IntoIterator<Item = (String, String)>,
    ) -> Registrar {
        Registrar {
            config,
            accounts: accounts.into_iter().collect(),
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            bindings: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Current contacts of an account (expired ones excluded), e.g. "where is agent 2001?".
    pub fn contacts(&self, now: Instant, user: &str) -> Vec<Binding> {
        self.bindings
            .get(user)
            .map(|b| b.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Every account with at least one live contact.
    pub fn registered_users(&self, now: Instant) -> Vec<String> {
        let mut users: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.iter().any(|b| b.expires_at > now))
            .map(|(u, _)| u.clone())
            .collect();
        users.sort();
        users
    }

    /// Earliest binding expiry or lockout end.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flatten()
            .map(|b| b.expires_at)
            .chain(self.failures.values().filter_map(|f| f.locked_until))
            .min()
    }

    /// Forgets expired bindings, nonces, lockouts and old failures.
    pub fn handle_timeout(&mut self, now: Instant) {
        for bindings in self.bindings.values_mut() {
            bindings.retain(|b| b.expires_at > now);
        }
        self.bindings.retain(|_, b| !b.is_empty());
        let ttl = self.config.nonce_ttl;
        // Expired nonces are kept one more TTL so late requests get stale=true, not a failure.
        while let Some(front) = self.nonce_order.front() {
            match self.nonces.get(front) {
                Some(state) if state.issued + ttl * 2 > now => break,
                _ => {
                    if let Some(n) = self.nonce_order.pop_front() {
                        self.nonces.remove(&n);
                    }
                }
            }
        }
        let window = self.config.failure_window;
        self.failures.retain(|_, record| {
            while record.times.front().is_some_and(|t| *t + window <= now) {
                record.times.pop_front();
            }
            if record.locked_until.is_some_and(|until| until <= now) {
                record.locked_until = None;
            }
            !record.times.is_empty() || record.locked_until.is_some()
        });
    }

    fn new_nonce(&mut self, now: Instant) -> String {
        let nonce = format!("{:032x}", rand::rng().random::<u128>());
        if self.nonce_order.len() >= MAX_NONCES
            && let Some(old) = self.nonce_order.pop_front()
        {
            self.nonces.remove(&old);
        }
        self.nonces.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                last_nc: 0,
            },
        );
        self.nonce_order.push_back(nonce.clone());
        nonce
    }

    fn challenge(&mut self, now: Instant, request: &Message, stale: bool) -> Message {
        let mut response = Message::response_to(request, 401, "Unauthorized");
        response.set_to_tag(&crate::endpoint::new_tag());
        let nonce = self.new_nonce(now);
        for algorithm in self.config.algorithms.clone() {
            let challenge = Challenge {
                realm: self.config.realm.clone(),
                nonce: nonce.clone(),
                opaque: None,
                algorithm,
                qop_auth: true,
                stale,
            };
            response.push_header("WWW-Authenticate", challenge.to_string());
        }
        response
    }

    fn forbidden(request: &Message, reason: &str) -> Message {
        let mut response = Message::response_to(request, 403, reason);
        response.set_to_tag(&crate::endpoint::new_tag());
        response
    }

    fn is_locked(&self, now: Instant, ip: IpAddr) -> bool {
        self.failures
            .get(&ip)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| until > now)
    }

    /// Records a failure; true when it trips the lockout.
    fn record_failure(&mut self, now: Instant, ip: IpAddr) -> bool {
        let window = self.config.failure_window;
        let max = self.config.max_failures.max(1) as usize;
        let lockout = self.config.lockout;
        let record = self.failures.entry(ip).or_default();
        while record.times.front().is_some_and(|t| *t + window <= now) {
            record.times.pop_front();
        }
        record.times.push_back(now);
        if record.times.len() >= max {
            record.times.clear();
            record.locked_until = Some(now + lockout);
            return true;
        }
        false
    }

    /// Checks the request's digest credentials. `Ok(user)` when they are good; otherwise the
    /// response to send (401 challenge, 403 lockout) and what happened.
    pub fn authenticate(
        &mut self,
        now: Instant,
        request: &Message,
        source: IpAddr,
    ) -> Result<String, Box<Reply>> {
        if self.is_locked(now, source) {
            return Err(Box::new(Reply {
                response: Self::forbidden(request, "Forbidden"),
                outcome: Outcome::Refused { source },
            }));
        }
        let method = request.method().map(|m| m.to_string()).unwrap_or_default();
        let credentials = request
            .header_all("Authorization")
            .filter_map(|h| Credentials::parse(h).ok())
            .find(|c| {
                c.realm == self.config.realm && self.config.algorithms.contains(&c.algorithm)
            });
        let Some(credentials) = credentials else {
            let malformed = request.header("Authorization").is_some()
                && request
                    .header_all("Authorization")
                    .all(|h| Credentials::parse(h).is_err());
            if malformed {
                return Err(Box::new(self.fail(now, request, source, String::new())));
            }
            return Err(Box::new(Reply {
                response: self.challenge(now, request, false),
                outcome: Outcome::Challenged { stale: false },
            }));
        };
        let password = self
            .accounts
            .get(&credentials.username)
            .cloned()
            .unwrap_or_else(|| DUMMY_PASSWORD.to_string());
        let known_user = self.accounts.contains_key(&credentials.username);
        let correct = credentials.verify(&method, &password) && known_user;
        if !correct {
            return Err(Box::new(self.fail(
                now,
                request,
                source,
                credentials.username,
            )));
        }
        let ttl = self.config.nonce_ttl;
        let fresh = match self.nonces.get_mut(&credentials.nonce) {
            Some(state) if state.issued + ttl > now => {
                match credentials.nc {
                    Some(nc) if nc <= state.last_nc => {
                        // Replayed nonce-count.
                        return Err(Box::new(self.fail(
                            now,
                            request,
                            source,
                            credentials.username,
                        )));
                    }
                    Some(nc) => state.last_nc = nc,
                    None => {}
                }
                true
            }
            _ => false,
        };
        if !fresh {
            // Right password, old or unknown nonce (expired, or issued before a restart).
            return Err(Box::new(Reply {
                response: self.challenge(now, request, true),
                outcome: Outcome::Challenged { stale: true },
            }));
        }
        self.failures.remove(&source);
        Ok(credentials.username)
    }

    fn fail(&mut self, now: Instant, request: &Message, source: IpAddr, user: String) -> Reply {
        if self.record_failure(now, source) {
            tracing::warn!(
                %source,
                user = %user,
                lockout_secs = self.config.lockout.as_secs(),
                "too many failed authentications: source locked out"
            );
            return Reply {
                response: Self::forbidden(request, "Forbidden (too many failures)"),
                outcome: Outcome::LockedOut { source },
            };
        }
        Reply {
            response: self.challenge(now, request, false),
            outcome: Outcome::Failed { user },
        }
    }

    /// Handles a REGISTER: authenticates, then adds, refreshes or removes bindings.
    pub fn handle_register(&mut self, now: Instant, request: &Message, source: Peer) -> Reply {
        let user = match self.authenticate(now, request, source.remote.ip()) {
            Ok(user) => user,
            Err(reply) => return *reply,
        };
        match self.update_bindings(now, request, &user, source) {
            Ok(count) => {
                let mut response = Message::response_to(request, 200, "OK");
                response.set_to_tag(&crate::endpoint::new_tag());
                for binding in self.contacts(now, &user) {
                    let remaining = binding.expires_at.saturating_duration_since(now).as_secs();
                    let mut contact = binding.contact.clone();
                    contact.set_param("expires", Some(&remaining.to_string()));
                    response.push_header("Contact", contact.to_string());
                }
                tracing::info!(user = %user, contacts = count, "registered");
                Reply {
                    response,
                    outcome: Outcome::Registered {
                        user,
                        contacts: count,
                    },
                }
            }
            Err(response) => Reply {
                outcome: Outcome::Rejected {
                    status: response.status().unwrap_or(400),
                },
                response,
            },
        }
    }

    fn update_bindings(
        &mut self,
        now: Instant,
        request: &Message,
        user: &str,
        source: Peer,
    ) -> Result<usize, Message> {
        let reject = |code: u16, reason: &str| {
            let mut r = Message::response_to(request, code, reason);
            r.set_to_tag(&crate::endpoint::new_tag());
            r
        };
        let to_user = request.to().ok().and_then(|t| t.user().map(str::to_string));
        if to_user.as_deref() != Some(user) {
            return Err(reject(403, "Forbidden (To does not match the credentials)"));
        }
        let contacts = request
            .contacts()
            .map_err(|e| reject(400, &format!("Bad Request ({e})")))?;
        let header_expires = request
            .expires()
            .map_err(|e| reject(400, &format!("Bad Request ({e})")))?;
        let call_id = request.call_id().unwrap_or_default().to_string();
        let cseq = request.cseq().map(|(n, _)| n).unwrap_or(0);

        if contacts.contains(&ContactValue::Star) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(reject(400, "Bad Request (Contact: * needs Expires: 0)"));
            }
            self.bindings.remove(user);
            return Ok(0);
        }
        let mut planned = Vec::new();
        for contact in contacts {
            let ContactValue::Addr(addr) = contact else {
                continue;
            };
            let expires = addr
                .param("expires")
                .flatten()
                .and_then(|e| e.parse::<u64>().ok())
                .map(|e| e.min(u32::MAX as u64) as u32)
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if expires != 0 && expires < self.config.min_expires {
                let mut r = reject(423, "Interval Too Brief");
                r.push_header("Min-Expires", self.config.min_expires.to_string());
                return Err(r);
            }
            planned.push((addr, expires.min(self.config.max_expires)));
        }
        let bindings = self.bindings.entry(user.to_string()).or_default();
        bindings.retain(|b| b.expires_at > now);
        for (mut addr, expires) in planned {
            addr.params
                .retain(|(n, _)| !n.eq_ignore_ascii_case("expires"));
            let existing = bindings
                .iter()
                .position(|b| uri_equal(&b.contact.uri, &addr.uri));
            if let Some(i) = existing {
                let b = &bindings[i];
                if b.call_id == call_id && cseq <= b.cseq {
                    continue; // out of order (RFC 3261 §10.3 step 7)
                }
                bindings.remove(i);
            }
            if expires == 0 {
                continue;
            }
            bindings.push(Binding {
                contact: addr,
                expires_at: now + Duration::from_secs(expires as u64),
                call_id: call_id.clone(),
                cseq,
                source,
            });
        }
        let max = self.config.max_contacts_per_account.max(1);
        if bindings.len() > max {
            let excess = bindings.len() - max;
            bindings.drain(..excess);
        }
        let count = bindings.len();
        if count == 0 {
            self.bindings.remove(user);
        }
        Ok(count)
    }
}

/// Contact URI comparison, tolerant of scheme/host case (RFC 3261 §19.1.4, simplified).
fn uri_equal(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest;
    use crate::transport::TransportKind;

    fn peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.5:5080".parse().unwrap(),
        }
    }

    fn register(user: &str, cseq: u32, contact: &str, expires: Option<u32>) -> Message {
        let mut text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5:5080;branch=z9hG4bK{cseq}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=f1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n"
        );
        if let Some(e) = expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(text.as_bytes()).unwrap()
    }

    fn with_answer(
        mut req: Message,
        challenge: &Message,
        algorithm: Algorithm,
        user: &str,
        password: &str,
        nc: u32,
    ) -> Message {
        let ch = challenge
            .header_all("WWW-Authenticate")
            .map(|h| Challenge::parse(h).unwrap())
            .find(|c| c.algorithm == algorithm)
            .expect("challenge for algorithm");
        let cred = digest::answer(
            &ch,
            user,
            password,
            "REGISTER",
            "sip:127.0.0.1",
            nc,
            "cn0nce",
        );
        req.push_header("Authorization", cred.to_string());
        req
    }

    fn registrar(algorithms: Vec<Algorithm>) -> Registrar {
        Registrar::new(
            RegistrarConfig {
                algorithms,
                ..RegistrarConfig::default()
            },
            [("2001".to_string(), "secret2001".to_string())],
        )
    }

    #[test]
    fn md5_sha256_and_both_register() {
        for (offered, used) in [
            (vec![Algorithm::Md5], Algorithm::Md5),
            (vec![Algorithm::Sha256], Algorithm::Sha256),
            (vec![Algorithm::Sha256, Algorithm::Md5], Algorithm::Md5),
            (vec![Algorithm::Sha256, Algorithm::Md5], Algorithm::Sha256),
        ] {
            let mut r = registrar(offered.clone());
            let now = Instant::now();
            let req = register("2001", 1, "<sip:2001@127.0.0.5:5080>", Some(120));
            let first = r.handle_register(now, &req, peer());
            assert_eq!(first.response.status(), Some(401));
            assert_eq!(
                first.response.header_all("WWW-Authenticate").count(),
                offered.len()
            );
            let authed = with_answer(
                register("2001", 2, "<sip:2001@127.0.0.5:5080>", Some(120)),
                &first.response,
                used,
                "2001",
                "secret2001",
                1,
            );
            let ok = r.handle_register(now, &authed, peer());
            assert_eq!(ok.response.status(), Some(200), "{offered:?} {used:?}");
            let contacts = r.contacts(now, "2001");
            assert_eq!(contacts.len(), 1);
            assert_eq!(contacts[0].contact.uri, "sip:2001@127.0.0.5:5080");
            assert_eq!(contacts[0].expires_at, now + Duration::from_secs(120));
        }
    }

    #[test]
    fn several_contacts_expiry_unregister_and_star() {
        let mut r = registrar(vec![Algorithm::Md5]);
        let now = Instant::now();
        let ch = r
            .handle_register(now, &register("2001", 1, "<sip:a@127.0.0.5>", None), peer())
            .response;
        let req = with_answer(
            register(
                "2001",
                2,
                "<sip:a@127.0.0.5>;expires=60, <sip:b@127.0.0.6>",
                Some(300),
            ),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            1,
        );
        assert_eq!(
            r.handle_register(now, &req, peer()).response.status(),
            Some(200)
        );
        assert_eq!(r.contacts(now, "2001").len(), 2);
        // a expires after 60 s, b after 300 s.
        r.handle_timeout(now + Duration::from_secs(61));
        let left = r.contacts(now + Duration::from_secs(61), "2001");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].contact.uri, "sip:b@127.0.0.6");
        // Expires: 0 on b removes it.
        let req = with_answer(
            register("2001", 3, "<sip:b@127.0.0.6>", Some(0)),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            2,
        );
        assert_eq!(
            r.handle_register(now, &req, peer()).response.status(),
            Some(200)
        );
        assert!(r.contacts(now, "2001").is_empty());
        // Contact: * with Expires: 0 removes all.
        let req = with_answer(
            register("2001", 4, "<sip:c@127.0.0.7>", Some(100)),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            3,
        );
        r.handle_register(now, &req, peer());
        assert_eq!(r.contacts(now, "2001").len(), 1);
        let req = with_answer(
            register("2001", 5, "*", Some(0)),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            4,
        );
        assert_eq!(
            r.handle_register(now, &req, peer()).response.status(),
            Some(200)
        );
        assert!(r.contacts(now, "2001").is_empty());
        // Too brief.
        let req = with_answer(
            register("2001", 6, "<sip:c@127.0.0.7>", Some(5)),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            5,
        );
        let reply = r.handle_register(now, &req, peer());
        assert_eq!(reply.response.status(), Some(423));
        assert_eq!(reply.response.header("Min-Expires"), Some("60"));
    }

    #[test]
    fn nonce_count_replay_and_stale_nonce() {
        let mut r = registrar(vec![Algorithm::Md5]);
        let now = Instant::now();
        let ch = r
            .handle_register(now, &register("2001", 1, "<sip:a@127.0.0.5>", None), peer())
            .response;
        let req = with_answer(
            register("2001", 2, "<sip:a@127.0.0.5>", None),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            1,
        );
        assert_eq!(
            r.handle_register(now, &req, peer()).response.status(),
            Some(200)
        );
        // Same nc again: replay.
        let replay = r.handle_register(now, &req, peer());
        assert_eq!(replay.response.status(), Some(401));
        assert!(matches!(replay.outcome, Outcome::Failed { .. }));
        // After the TTL the right password gets stale=true.
        let later = now + Duration::from_secs(301);
        let req = with_answer(
            register("2001", 3, "<sip:a@127.0.0.5>", None),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            2,
        );
        let stale = r.handle_register(later, &req, peer());
        assert_eq!(stale.outcome, Outcome::Challenged { stale: true });
        assert!(
            stale
                .response
                .header("WWW-Authenticate")
                .unwrap()
                .contains("stale=true")
        );
    }

    #[test]
    fn unknown_user_gets_same_challenge_and_throttle_trips_after_five() {
        let mut r = registrar(vec![Algorithm::Md5]);
        let now = Instant::now();
        let known = r
            .handle_register(now, &register("2001", 1, "<sip:a@127.0.0.5>", None), peer())
            .response;
        let unknown = r
            .handle_register(now, &register("9999", 1, "<sip:a@127.0.0.5>", None), peer())
            .response;
        let shape = |m: &Message| {
            let ch = Challenge::parse(m.header("WWW-Authenticate").unwrap()).unwrap();
            (
                m.status(),
                ch.realm,
                ch.algorithm,
                ch.qop_auth,
                m.header_all("WWW-Authenticate").count(),
            )
        };
        assert_eq!(shape(&known), shape(&unknown));
        let mut statuses = Vec::new();
        for i in 0..7u32 {
            let req = with_answer(
                register("2001", 10 + i, "<sip:a@127.0.0.5>", None),
                &known,
                Algorithm::Md5,
                "2001",
                "wrong",
                i + 1,
            );
            statuses.push(
                r.handle_register(now + Duration::from_secs(i as u64), &req, peer())
                    .response
                    .status()
                    .unwrap(),
            );
        }
        assert_eq!(statuses, vec![401, 401, 401, 401, 403, 403, 403]);
        // Even the right password is refused during the lockout…
        let good = with_answer(
            register("2001", 30, "<sip:a@127.0.0.5>", None),
            &known,
            Algorithm::Md5,
            "2001",
            "secret2001",
            20,
        );
        assert_eq!(
            r.handle_register(now + Duration::from_secs(10), &good, peer())
                .response
                .status(),
            Some(403)
        );
        // …and accepted after it.
        let after = now + Duration::from_secs(4 + 300 + 1);
        r.handle_timeout(after);
        let ch = r
            .handle_register(
                after,
                &register("2001", 31, "<sip:a@127.0.0.5>", None),
                peer(),
            )
            .response;
        let good = with_answer(
            register("2001", 32, "<sip:a@127.0.0.5>", None),
            &ch,
            Algorithm::Md5,
            "2001",
            "secret2001",
            1,
        );
        assert_eq!(
            r.handle_register(after, &good, peer()).response.status(),
            Some(200)
        );
    }

    #[test]
    fn options_answer_lists_capabilities() {
        let req = register("2001", 1, "<sip:a@127.0.0.5>", None);
        let resp = options_response(&req, "t");
        assert_eq!(resp.status(), Some(200));
        assert!(resp.header("Allow").unwrap().contains("INVITE"));
        assert_eq!(resp.header("Accept"), Some("application/sdp"));
        assert!(resp.header("Supported").is_some());
    }
}
