//! What the phone reports: printed as one JSON object per line in `--no-tui` mode, shown by the
//! terminal UI otherwise.

use santral_sip::Message;
use serde::Serialize;

/// The screen-pop information santral sends with a call offered to an agent (docs/server.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScreenPop {
    /// The caller as the From header shows it (display name and user).
    pub from: String,
    pub caller: Option<String>,
    pub queue: Option<String>,
    pub ivr_path: Option<String>,
    pub customer: Option<String>,
    pub wait_secs: Option<u64>,
    pub server_call_id: Option<String>,
}

impl ScreenPop {
    /// Reads the X-Santral-* headers of an INVITE; absent or malformed ones stay `None`.
    pub fn from_invite(invite: &Message) -> ScreenPop {
        let header = |name: &str| {
            invite
                .header(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ScreenPop {
            from: invite
                .header("From")
                .map(|f| f.split(";tag=").next().unwrap_or(f).trim().to_string())
                .unwrap_or_default(),
            caller: header("X-Santral-Caller"),
            queue: header("X-Santral-Queue"),
            ivr_path: header("X-Santral-IVR-Path"),
            customer: header("X-Santral-Customer"),
            wait_secs: header("X-Santral-Wait").and_then(|w| w.parse().ok()),
            server_call_id: header("X-Santral-Call-ID"),
        }
    }

    /// The number a CRM lookup should use: the server's caller header, else the From user.
    pub fn caller_number(&self) -> String {
        if let Some(caller) = &self.caller {
            return caller.clone();
        }
        let uri = self
            .from
            .split('<')
            .nth(1)
            .unwrap_or(&self.from)
            .trim_end_matches('>');
        uri.trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// Fills a CRM URL template: `{caller}` becomes the caller's number (percent-encoded).
pub fn crm_url(template: &str, screen_pop: &ScreenPop) -> String {
    let number: String = screen_pop
        .caller_number()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    template.replace("{caller}", &number)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceSamples {
    pub captured: u64,
    pub played: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PhoneEvent {
    Started {
        user: String,
        server: String,
        contact: String,
        audio: String,
    },
    Registering,
    Registered {
        expires: u32,
    },
    RegistrationFailed {
        status: u16,
    },
    Unregistered,
    /// The server stopped answering keepalives.
    ServerUnreachable,
    /// It answers again; the phone registers anew.
    ServerReachable,
    IncomingCall {
        call_id: String,
        #[serde(flatten)]
        screen_pop: ScreenPop,
        crm_url: Option<String>,
    },
    Dialing {
        call_id: String,
        target: String,
    },
    Progress {
        call_id: String,
        status: u16,
    },
    Answered {
        call_id: String,
        codec: String,
        remote_rtp: String,
    },
    Held {
        call_id: String,
    },
    Resumed {
        call_id: String,
    },
    Muted {
        muted: bool,
    },
    DtmfSent {
        digits: String,
    },
    DtmfReceived {
        digit: String,
    },
    TransferAccepted {
        call_id: String,
        target: String,
    },
    TransferFailed {
        call_id: String,
        status: u16,
    },
    Ended {
        call_id: String,
        reason: String,
        duration_secs: f64,
        mos: Option<f64>,
        /// Samples the sound card's capture / playback callbacks moved so far (device audio).
        #[serde(skip_serializing_if = "Option::is_none")]
        device_samples: Option<DeviceSamples>,
    },
    AgentState {
        state: String,
        detail: String,
    },
    Status {
        registration: String,
        call: Option<String>,
        call_state: Option<String>,
    },
    Error {
        message: String,
    },
    Stopped,
}

impl PhoneEvent {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!("{{\"event\":\"error\",\"message\":\"cannot encode event: {e}\"}}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_pop_reads_santral_headers_and_fills_the_crm_template() {
        let invite = Message::parse(
            b"INVITE sip:2001@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
From: \"Customer\" <sip:05321234567@127.0.0.1>;tag=abc\r\nTo: <sip:2001@127.0.0.1>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:santral@127.0.0.1:5060>\r\n\
X-Santral-Caller: +90 532 123\r\nX-Santral-Queue: billing\r\n\
X-Santral-IVR-Path: main,billing\r\nX-Santral-Wait: 7\r\nX-Santral-Call-ID: srv-1\r\n\
Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        let pop = ScreenPop::from_invite(&invite);
        assert_eq!(pop.from, "\"Customer\" <sip:05321234567@127.0.0.1>");
        assert_eq!(pop.queue.as_deref(), Some("billing"));
        assert_eq!(pop.ivr_path.as_deref(), Some("main,billing"));
        assert_eq!(pop.wait_secs, Some(7));
        assert_eq!(pop.customer, None);
        assert_eq!(
            crm_url("https://crm.example/lookup?n={caller}", &pop),
            "https://crm.example/lookup?n=%2B90%20532%20123"
        );
        let json = PhoneEvent::IncomingCall {
            call_id: "c1".into(),
            screen_pop: pop,
            crm_url: None,
        }
        .to_json_line();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event"], "incoming_call");
        assert_eq!(value["queue"], "billing");
        assert_eq!(value["wait_secs"], 7);
    }

    #[test]
    fn caller_number_falls_back_to_the_from_user() {
        let pop = ScreenPop {
            from: "\"Customer\" <sip:0532@127.0.0.1>".into(),
            ..ScreenPop::default()
        };
        assert_eq!(pop.caller_number(), "0532");
    }
}
