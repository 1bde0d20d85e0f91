//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 8760: MD5 and SHA-256, qop=auth).

use std::fmt;
use std::fmt::Write as _;

use md5::Digest as _;

use crate::msg::split_outside_quotes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        let t = text.trim().trim_matches('"');
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        let mut out = String::with_capacity(64);
        match self {
            Algorithm::Md5 => {
                for b in md5::Md5::digest(data).iter() {
                    let _ = write!(out, "{b:02x}");
                }
            }
            Algorithm::Sha256 => {
                for b in sha2::Sha256::digest(data).iter() {
                    let _ = write!(out, "{b:02x}");
                }
            }
        }
        out
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `auth-param` list of a `Digest` challenge or credentials, names lower-cased, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestParams {
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest scheme")]
    NotDigest,
    #[error("malformed parameter {0:?}")]
    Malformed(String),
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm {0}")]
    Algorithm(String),
}

impl DigestParams {
    pub fn parse(header_value: &str) -> Result<DigestParams, DigestError> {
        let value = header_value.trim();
        let rest = match value.split_once(|c: char| c.is_whitespace()) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Digest") => rest,
            _ => return Err(DigestError::NotDigest),
        };
        let mut params = Vec::new();
        for part in split_outside_quotes(rest, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| DigestError::Malformed(part.chars().take(40).collect()))?;
            let value = value.trim();
            let value = if let Some(inner) = value.strip_prefix('"') {
                inner
                    .strip_suffix('"')
                    .ok_or_else(|| DigestError::Malformed(name.trim().to_string()))?
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\")
            } else {
                value.to_string()
            };
            params.push((name.trim().to_ascii_lowercase(), value));
        }
        Ok(DigestParams { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &'static str) -> Result<&str, DigestError> {
        self.get(name).ok_or(DigestError::Missing(name))
    }

    pub fn algorithm(&self) -> Result<Algorithm, DigestError> {
        match self.get("algorithm") {
            None => Ok(Algorithm::Md5),
            Some(a) => Algorithm::parse(a).ok_or_else(|| DigestError::Algorithm(a.to_string())),
        }
    }
}

/// A challenge as sent in WWW-Authenticate / Proxy-Authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(header_value: &str) -> Result<Challenge, DigestError> {
        let p = DigestParams::parse(header_value)?;
        Ok(Challenge {
            realm: p.require("realm")?.to_string(),
            nonce: p.require("nonce")?.to_string(),
            opaque: p.get("opaque").map(str::to_string),
            algorithm: p.algorithm()?,
            qop_auth: p
                .get("qop")
                .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth"))),
            stale: p
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}",
            self.realm, self.nonce, self.algorithm
        )?;
        if self.qop_auth {
            f.write_str(", qop=\"auth\"")?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque=\"{opaque}\"")?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        Ok(())
    }
}

/// Credentials as received in Authorization / Proxy-Authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The digest-uri exactly as the client sent it.
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub nc: Option<u32>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    pub fn parse(header_value: &str) -> Result<Credentials, DigestError> {
        let p = DigestParams::parse(header_value)?;
        let qop = p.get("qop").map(str::to_string);
        let nc = match p.get("nc") {
            Some(nc) => {
                Some(u32::from_str_radix(nc, 16).map_err(|_| DigestError::Malformed("nc".into()))?)
            }
            None => None,
        };
        if qop.is_some() && (nc.is_none() || p.get("cnonce").is_none()) {
            return Err(DigestError::Missing("nc/cnonce"));
        }
        Ok(Credentials {
            username: p.require("username")?.to_string(),
            realm: p.require("realm")?.to_string(),
            nonce: p.require("nonce")?.to_string(),
            uri: p.require("uri")?.to_string(),
            response: p.require("response")?.to_ascii_lowercase(),
            algorithm: p.algorithm()?,
            qop,
            nc,
            cnonce: p.get("cnonce").map(str::to_string),
            opaque: p.get("opaque").map(str::to_string),
        })
    }

    /// The response value a client knowing `password` would have computed for `method`.
    pub fn expected_response(&self, method: &str, password: &str) -> String {
        compute_response(
            self.algorithm,
            &self.username,
            &self.realm,
            password,
            method,
            &self.uri,
            &self.nonce,
            self.qop.as_deref().zip(self.nc).zip(self.cnonce.as_deref()),
        )
    }

    /// Constant-time comparison against the expected response.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let expected = self.expected_response(method, password);
        constant_time_eq(expected.as_bytes(), self.response.as_bytes())
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            self.username, self.realm, self.nonce, self.uri, self.response, self.algorithm
        )?;
        if let (Some(qop), Some(nc), Some(cnonce)) = (&self.qop, self.nc, &self.cnonce) {
            write!(f, ", qop={qop}, nc={nc:08x}, cnonce=\"{cnonce}\"")?;
        }
        if let Some(opaque) = &self.opaque {
            write!(f, ", opaque=\"{opaque}\"")?;
        }
        Ok(())
    }
}

/// RFC 2617 / RFC 8760 response computation.
#[allow(clippy::too_many_arguments)]
pub fn compute_response(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop_nc_cnonce: Option<((&str, u32), &str)>,
) -> String {
    let ha1 = algorithm.hex(format!("{username}:{realm}:{password}").as_bytes());
    let ha2 = algorithm.hex(format!("{method}:{uri}").as_bytes());
    match qop_nc_cnonce {
        Some(((qop, nc), cnonce)) => {
            algorithm.hex(format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}").as_bytes())
        }
        None => algorithm.hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Builds the client's answer to `challenge`.
pub fn answer(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Credentials {
    let qop = challenge.qop_auth.then(|| "auth".to_string());
    let response = compute_response(
        challenge.algorithm,
        username,
        &challenge.realm,
        password,
        method,
        uri,
        &challenge.nonce,
        qop.as_deref().map(|q| ((q, nc), cnonce)),
    );
    Credentials {
        username: username.to_string(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_string(),
        response,
        algorithm: challenge.algorithm,
        nc: qop.as_ref().map(|_| nc),
        cnonce: qop.as_ref().map(|_| cnonce.to_string()),
        qop,
        opaque: challenge.opaque.clone(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_md5() {
        // RFC 2617 §3.5 example (HTTP, but the computation is the same).
        let r = compute_response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some((("auth", 1), "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_example_sha256() {
        // RFC 7616 §3.9.1 SHA-256 example.
        let r = compute_response(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some((("auth", 1), "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn credentials_round_trip_and_verify() {
        let ch = Challenge {
            realm: "santral".into(),
            nonce: "abc".into(),
            opaque: None,
            algorithm: Algorithm::Sha256,
            qop_auth: true,
            stale: false,
        };
        let parsed = Challenge::parse(&ch.to_string()).unwrap();
        assert_eq!(parsed, ch);
        let cred = answer(
            &ch,
            "2001",
            "secret2001",
            "REGISTER",
            "sip:127.0.0.1;transport=UDP",
            1,
            "xyz",
        );
        let back = Credentials::parse(&cred.to_string()).unwrap();
        assert_eq!(back.uri, "sip:127.0.0.1;transport=UDP");
        assert!(back.verify("REGISTER", "secret2001"));
        assert!(!back.verify("REGISTER", "wrong"));
        assert!(Credentials::parse("Basic abc").is_err());
        assert!(Credentials::parse("Digest username=\"x").is_err());
    }
}
