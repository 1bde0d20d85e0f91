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
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP has no m=audio line")]
    NoAudio,
    #[error("SDP m=audio line is malformed: {0:?}")]
    BadMedia(String),
    #[error("SDP rejects the audio stream (port 0)")]
    Rejected,
    #[error("SDP has no usable c= address")]
    NoAddress,
    #[error("SDP offers neither PCMA nor PCMU")]
    NoCommonCodec,
    #[error("SDP: {0}")]
    NotLoopback(#[from] LoopbackError),
}

impl Answer {
    pub fn parse(body: &[u8]) -> Result<Answer, SdpError> {
        let audio = parse_audio(body)?;
        Ok(Answer {
            rtp: audio.rtp,
            payload_type: audio.payload_types[0],
            telephone_event: audio.telephone_event,
        })
    }
}

/// What the agent side uses of the server's offer: where to echo, which law to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub rtp: SocketAddr,
    pub law: Law,
    pub telephone_event: Option<u8>,
}

impl Offer {
    /// Parses an offer and picks the first G.711 law it lists.
    pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
        let audio = parse_audio(body)?;
        let law = audio
            .payload_types
            .iter()
            .find_map(|pt| match pt {
                0 => Some(Law::Pcmu),
                8 => Some(Law::Pcma),
                _ => None,
            })
            .ok_or(SdpError::NoCommonCodec)?;
        Ok(Offer {
            rtp: audio.rtp,
            law,
            telephone_event: audio.telephone_event,
        })
    }

    /// Our answer: the chosen law (and telephone-event when offered) at `address:rtp_port`.
    pub fn answer(&self, address: IpAddr, rtp_port: u16, session_id: u64) -> String {
        let family = if address.is_ipv4() { "IP4" } else { "IP6" };
        let pt = self.law.payload_type();
        let name = self.law.encoding_name();
        let mut formats = pt.to_string();
        let mut attributes = format!("a=rtpmap:{pt} {name}/8000\r\n");
        if let Some(te) = self.telephone_event {
            formats.push_str(&format!(" {te}"));
            attributes.push_str(&format!(
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
            ));
        }
        format!(
            "v=0\r\n\
             o=santral-load {session_id} 1 IN {family} {address}\r\n\
             s=santral-load\r\n\
             c=IN {family} {address}\r\n\
             t=0 0\r\n\
             m=audio {rtp_port} RTP/AVP {formats}\r\n\
             {attributes}\
             a=ptime:20\r\n\
             a=sendrecv\r\n"
        )
    }
}

/// The first audio stream of a description.
struct AudioStream {
    rtp: SocketAddr,
    /// Never empty.
    payload_types: Vec<u8>,
    telephone_event: Option<u8>,
}

fn parse_audio(body: &[u8]) -> Result<AudioStream, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session_address: Option<IpAddr> = None;
    let mut media_address: Option<IpAddr> = None;
    let mut media: Option<(u16, Vec<u8>)> = None;
    let mut telephone_event = None;
    let mut in_audio = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            // Only the first audio stream counts; later m= lines end it.
            in_audio = rest.starts_with("audio ") && media.is_none();
            if in_audio {
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
    let (port, payload_types) = media.ok_or(SdpError::NoAudio)?;
    if port == 0 {
        return Err(SdpError::Rejected);
    }
    let address = media_address
        .or(session_address)
        .ok_or(SdpError::NoAddress)?;
    let rtp = SocketAddr::new(address, port);
    ensure_loopback(rtp)?;
    Ok(AudioStream {
        rtp,
        payload_types,
        telephone_event,
    })
}

fn parse_media(rest: &str) -> Result<(u16, Vec<u8>), SdpError> {
    let bad = || SdpError::BadMedia(rest.to_owned());
    let mut fields = rest.split_ascii_whitespace();
    let _audio = fields.next();
    let port = fields
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let _proto = fields.next().ok_or_else(bad)?;
    let payload_types = fields
        .take(32)
        .map(|pt| pt.parse::<u8>().map_err(|_| bad()))
        .collect::<Result<Vec<u8>, SdpError>>()?;
    if payload_types.is_empty() {
        return Err(bad());
    }
    Ok((port, payload_types))
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
    fn offers_are_answered_with_the_first_g711_law_and_telephone_event() {
        let offer = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10010 RTP/AVP 9 0 8 101\r\n\
                     a=rtpmap:101 telephone-event/8000\r\n";
        let parsed = Offer::parse(offer.as_bytes()).unwrap();
        assert_eq!(parsed.law, Law::Pcmu);
        assert_eq!(parsed.rtp, "127.0.0.1:10010".parse().unwrap());
        let answer = parsed.answer("127.0.0.1".parse().unwrap(), 40100, 3);
        assert!(
            answer.contains("m=audio 40100 RTP/AVP 0 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        // Our own answer parses back as an answer.
        let back = Answer::parse(answer.as_bytes()).unwrap();
        assert_eq!((back.payload_type, back.telephone_event), (0, Some(101)));
        let g722_only = "c=IN IP4 127.0.0.1\nm=audio 4000 RTP/AVP 9\n";
        assert_eq!(
            Offer::parse(g722_only.as_bytes()),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn bad_answers_are_clear_errors() {
        assert_eq!(Answer::parse(b"v=0\r\n"), Err(SdpError::NoAudio));
        assert_eq!(
            Answer::parse(b"c=IN IP4 127.0.0.1\nm=audio 0 RTP/AVP 8\n"),
            Err(SdpError::Rejected)
        );
        assert_eq!(
            Answer::parse(b"m=audio 4000 RTP/AVP 8\n"),
            Err(SdpError::NoAddress)
        );
        assert!(matches!(
            Answer::parse(b"c=IN IP4 127.0.0.1\nm=audio x RTP/AVP 8\n"),
            Err(SdpError::BadMedia(_))
        ));
        assert!(matches!(
            Answer::parse(b"c=IN IP4 198.51.100.7\nm=audio 4000 RTP/AVP 8\n"),
            Err(SdpError::NotLoopback(_))
        ));
        assert_eq!(Answer::parse(&[0xff, 0xfe]), Err(SdpError::NotUtf8));
    }
}
