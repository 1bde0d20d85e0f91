//! The generator's SDP: the offer it sends (one G.711 codec plus telephone-event 101) and the
//! few facts it needs from the answer (where to send RTP, which payload types).

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

use crate::target::{LoopbackError, ensure_loopback};

/// Payload type offered for RFC 4733 telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The G.711 law the generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Law {
    Pcmu,
    Pcma,
}

impl Law {
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }
}

/// The SDP offer for one call.
pub fn offer(address: IpAddr, rtp_port: u16, law: Law, session_id: u64) -> String {
    let family = if address.is_ipv4() { "IP4" } else { "IP6" };
    let pt = law.payload_type();
    let name = law.encoding_name();
    format!(
        "v=0\r\n\
         o=santral-load {session_id} 1 IN {family} {address}\r\n\
         s=santral-load\r\n\
         c=IN {family} {address}\r\n\
         t=0 0\r\n\
         m=audio {rtp_port} RTP/AVP {pt} {TELEPHONE_EVENT_PT}\r\n\
         a=rtpmap:{pt} {name}/8000\r\n\
         a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\n\
         a=fmtp:{TELEPHONE_EVENT_PT} 0-15\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    )
}

/// What the generator uses of an SDP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Where the server wants our RTP (and, with symmetric RTP, where its RTP comes from).
    pub rtp: SocketAddr,
    /// The first audio payload type of the answer's m= line.
    pub payload_type: u8,
    /// The answer's telephone-event payload type, when it kept one.
    pub telephone_event: Option<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("SDP answer is not UTF-8")]
    NotUtf8,
    #[error("SDP answer has no m=audio line")]
    NoAudio,
    #[error("SDP answer's m=audio line is malformed: {0:?}")]
    BadMedia(String),
    #[error("SDP answer rejected the audio stream (port 0)")]
    Rejected,
    #[error("SDP answer has no usable c= address")]
    NoAddress,
    #[error("SDP answer: {0}")]
    NotLoopback(#[from] LoopbackError),
}

impl Answer {
    pub fn parse(body: &[u8]) -> Result<Answer, AnswerError> {
        let text = std::str::from_utf8(body).map_err(|_| AnswerError::NotUtf8)?;
        let mut session_address: Option<IpAddr> = None;
        let mut media_address: Option<IpAddr> = None;
        let mut media: Option<(u16, u8)> = None;
        let mut telephone_event = None;
        let mut in_audio = false;
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("m=") {
                in_audio = rest.starts_with("audio ");
                if in_audio && media.is_none() {
                    media = Some(parse_media(rest)?);
                }
            } else if let Some(rest) = line.strip_prefix("c=") {
                let address = parse_connection(rest);
                if media.is_none() {
                    session_address = address;
                } else if in_audio {
                    media_address = address;
                }
            } else if let Some(rest) = line.strip_prefix("a=rtpmap:")
                && in_audio
                && let Some((pt, encoding)) = rest.split_once(' ')
                && encoding
                    .to_ascii_lowercase()
                    .starts_with("telephone-event/")
            {
                telephone_event = pt.trim().parse::<u8>().ok();
            }
        }
        let (port, payload_type) = media.ok_or(AnswerError::NoAudio)?;
        if port == 0 {
            return Err(AnswerError::Rejected);
        }
        let address = media_address
            .or(session_address)
            .ok_or(AnswerError::NoAddress)?;
        let rtp = SocketAddr::new(address, port);
        ensure_loopback(rtp)?;
        Ok(Answer {
            rtp,
            payload_type,
            telephone_event,
        })
    }
}

fn parse_media(rest: &str) -> Result<(u16, u8), AnswerError> {
    let bad = || AnswerError::BadMedia(rest.to_owned());
    let mut fields = rest.split_ascii_whitespace();
    let _audio = fields.next();
    let port = fields
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let _proto = fields.next().ok_or_else(bad)?;
    let payload_type = fields
        .next()
        .and_then(|pt| pt.parse::<u8>().ok())
        .ok_or_else(bad)?;
    Ok((port, payload_type))
}

fn parse_connection(rest: &str) -> Option<IpAddr> {
    let mut fields = rest.split_ascii_whitespace();
    let _net = fields.next()?;
    let _family = fields.next()?;
    let address = fields.next()?;
    // Multicast TTL suffixes (`/127`) do not occur in answers we accept; strip them anyway.
    address.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_the_codec_and_telephone_event() {
        let sdp = offer("127.0.0.1".parse().unwrap(), 40000, Law::Pcma, 7);
        assert!(sdp.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(sdp.contains("t=0 0\r\n"));
        let v6 = offer("::1".parse().unwrap(), 40002, Law::Pcmu, 7);
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
        assert!(v6.contains("m=audio 40002 RTP/AVP 0 101\r\n"));
    }

    #[test]
    fn answer_gives_address_port_and_payload_types() {
        let answer = "v=0\r\no=santral 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 10002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
                      a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let parsed = Answer::parse(answer.as_bytes()).unwrap();
        assert_eq!(parsed.rtp, "127.0.0.1:10002".parse().unwrap());
        assert_eq!(parsed.payload_type, 8);
        assert_eq!(parsed.telephone_event, Some(101));
    }

    #[test]
    fn media_level_address_wins_over_session_level() {
        let answer =
            "v=0\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 10004 RTP/AVP 0\nc=IN IP4 127.0.0.9\n";
        let parsed = Answer::parse(answer.as_bytes()).unwrap();
        assert_eq!(parsed.rtp, "127.0.0.9:10004".parse().unwrap());
        assert_eq!(parsed.telephone_event, None);
    }

    #[test]
    fn bad_answers_are_clear_errors() {
        assert_eq!(Answer::parse(b"v=0\r\n"), Err(AnswerError::NoAudio));
        assert_eq!(
            Answer::parse(b"c=IN IP4 127.0.0.1\nm=audio 0 RTP/AVP 8\n"),
            Err(AnswerError::Rejected)
        );
        assert_eq!(
            Answer::parse(b"m=audio 4000 RTP/AVP 8\n"),
            Err(AnswerError::NoAddress)
        );
        assert!(matches!(
            Answer::parse(b"c=IN IP4 127.0.0.1\nm=audio x RTP/AVP 8\n"),
            Err(AnswerError::BadMedia(_))
        ));
        assert!(matches!(
            Answer::parse(b"c=IN IP4 198.51.100.7\nm=audio 4000 RTP/AVP 8\n"),
            Err(AnswerError::NotLoopback(_))
        ));
        assert_eq!(Answer::parse(&[0xff, 0xfe]), Err(AnswerError::NotUtf8));
    }
}
