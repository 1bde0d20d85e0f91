//! The loopback-only rule: the generator never sends to an address outside 127.0.0.0/8 or ::1.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{0} is not a loopback address: santral-load only sends to 127.0.0.0/8 or [::1] \
     (load tests run on this machine)"
)]
pub struct LoopbackError(pub IpAddr);

/// Accepts 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); refuses everything else.
pub fn ensure_loopback(addr: SocketAddr) -> Result<(), LoopbackError> {
    let ip = addr.ip();
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback {
        Ok(())
    } else {
        Err(LoopbackError(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_pass_and_others_are_refused() {
        for ok in [
            "127.0.0.1:5060",
            "127.9.8.7:1",
            "[::1]:5060",
            "[::ffff:127.0.0.1]:5060",
        ] {
            assert_eq!(ensure_loopback(ok.parse().unwrap()), Ok(()), "{ok}");
        }
        for bad in [
            "192.0.2.1:5060",
            "10.0.0.1:5060",
            "0.0.0.0:5060",
            "[::]:5060",
            "[2001:db8::1]:5060",
        ] {
            let addr: SocketAddr = bad.parse().unwrap();
            let err = ensure_loopback(addr).unwrap_err();
            assert!(err.to_string().contains("not a loopback address"), "{err}");
        }
    }
}
