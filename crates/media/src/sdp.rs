//! SDP offer/answer for audio (RFC 3264 / RFC 4566), parsed and written with `rtc-sdp`.
//!
//! [`answer_offer`] picks the first of our codecs (in our preference order) that the offer also
//! carries, keeps the offerer's payload type numbers, adds telephone-event when offered, mirrors
//! the direction (hold), and rejects every other m-line with port 0. When nothing can be
//! accepted it returns [`NotAcceptable`], which carries the reason for a SIP 488.
//!
//! Packet time: we always send 20 ms and say so (`a=ptime:20`), and announce
//! `a=maxptime:60` because we receive any multiple of 10 ms up to 60 ms, mixed within a stream.
//! The offer's `a=ptime` is kept in [`NegotiatedMedia::remote_ptime_ms`] to size the jitter
//! buffer before the first packet; its `a=maxptime` in [`NegotiatedMedia::remote_maxptime_ms`]
//! (our 20 ms meets every value ≥ 20 seen in practice).

use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaName, RangedPort};
use rtc_sdp::description::session::{Origin, TimeDescription, Timing};
use rtc_sdp::{MediaDescription, SessionDescription};
use thiserror::Error;

use crate::codec::Codec;

/// The longest packets we receive (the jitter buffer takes any multiple of 10 ms up to this),
/// announced as `a=maxptime` next to the `a=ptime:20` we send.
pub const MAX_RECEIVED_PTIME_MS: u32 = 60;

/// Media direction of an m-line (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction to answer with when the offer says `self` and we would like `ours`.
    pub fn answer_to(self, ours: Direction) -> Direction {
        let (they_send, they_receive) = self.flags();
        let (we_send, we_receive) = ours.flags();
        match (we_send && they_receive, we_receive && they_send) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    fn flags(self) -> (bool, bool) {
        match self {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        }
    }

    /// True if we should send media in this direction.
    pub fn sends(self) -> bool {
        self.flags().0
    }

    /// True if we expect to receive media.
    pub fn receives(self) -> bool {
        self.flags().1
    }
}

/// What we can do, for building offers and answers.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Address put in `c=` and `o=` (IPv4 or IPv6).
    pub address: IpAddr,
    /// Our RTP port (RTCP is `rtp_port + 1`).
    pub rtp_port: u16,
    /// Codecs in our order of preference.
    pub codecs: Vec<Codec>,
    /// Offer/accept RFC 4733 telephone-event.
    pub telephone_event: bool,
    /// Payload type we use for telephone-event in our own offers.
    pub telephone_event_payload_type: u8,
    /// The direction we want (sendrecv normally; sendonly to put the other side on hold).
    pub direction: Direction,
    /// Value for `o=` session id.
    pub session_id: u64,
    /// Value for `o=` session version (increment on re-offers).
    pub session_version: u64,
}

impl LocalMedia {
    pub fn new(address: IpAddr, rtp_port: u16) -> Self {
        LocalMedia {
            address,
            rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::G722],
            telephone_event: true,
            telephone_event_payload_type: 101,
            direction: Direction::SendRecv,
            session_id: 1,
            session_version: 1,
        }
    }
}

/// The outcome of a successful negotiation: everything a media session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    pub codec: Codec,
    /// Payload type for `codec` on the wire (the offerer's number).
    pub payload_type: u8,
    /// Payload type for telephone-event, when both sides support it.
    pub telephone_event_payload_type: Option<u8>,
    /// Where the far end wants RTP (its port may be 0.0.0.0 for old-style hold).
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    /// Packet time we send, in ms: always 20 (our engine's frame), whatever the far end
    /// prefers. Every RTP sender must accept 20 ms G.711/G.722 (RFC 3551 §4.5 default), and a
    /// `maxptime` below 20 is not met by any real endpoint we know of.
    pub ptime_ms: u32,
    /// The far end's `a=ptime` (what it asks for and, in practice, sends), when given and in
    /// the 10–60 ms range we receive: sizes the jitter buffer from the first packet on.
    /// Packets of any multiple of 10 ms up to 60 ms are received whatever was announced.
    pub remote_ptime_ms: Option<u32>,
    /// The far end's `a=maxptime`, when given.
    pub remote_maxptime_ms: Option<u32>,
    /// Our direction for this media stream.
    pub direction: Direction,
}

/// An SDP answer plus what it agreed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub sdp: String,
    pub media: NegotiatedMedia,
}

/// Why an offer cannot be answered: send "488 Not Acceptable Here" with [`NotAcceptable::reason`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum NotAcceptable {
    #[error("SDP could not be parsed: {0}")]
    Unparseable(String),
    #[error("offer has no audio stream")]
    NoAudio,
    #[error("offer requires secure RTP ({0}), which is not supported")]
    SecureRtpOnly(String),
    #[error("no common audio codec (offered: {offered})")]
    NoCommonCodec { offered: String },
    #[error("connection address is missing or invalid: {0}")]
    BadConnection(String),
}

impl NotAcceptable {
    /// SIP status code to answer with.
    pub fn status_code(&self) -> u16 {
        488
    }

    /// Text for a `Warning: 304` / `Reason` header.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// rtc-sdp insists on a `t=` line; many SIP devices omit it. Also normalise line endings.
fn normalise(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 8);
    let mut has_timing = false;
    let lines: Vec<&str> = sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    for line in &lines {
        if line.starts_with("t=") {
            has_timing = true;
        }
    }
    for line in lines {
        // t= belongs after v/o/s/i/u/e/p/c/b and before z/k/a/m (RFC 4566 §5).
        if !has_timing && ["z=", "k=", "a=", "m="].iter().any(|p| line.starts_with(p)) {
            out.push_str("t=0 0\r\n");
            has_timing = true;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !has_timing {
        out.push_str("t=0 0\r\n");
    }
    out
}

/// Parses an SDP body (tolerating a missing `t=` line).
pub fn parse(sdp: &str) -> Result<SessionDescription, NotAcceptable> {
    let text = normalise(sdp);
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| NotAcceptable::Unparseable(e.to_string()))
}

fn connection_address(info: &ConnectionInformation) -> Result<IpAddr, NotAcceptable> {
    let text = info
        .address
        .as_ref()
        .map(|a| a.address.as_str())
        .unwrap_or("");
    // Multicast TTL suffix ("224.2.1.1/127") is not ours to support, but parse the address part.
    let host = text.split('/').next().unwrap_or("");
    host.parse::<IpAddr>()
        .map_err(|_| NotAcceptable::BadConnection(text.to_owned()))
}

fn media_direction(media: &MediaDescription, session: &SessionDescription) -> Direction {
    let pick = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    };
    pick(&media.attributes)
        .or_else(|| pick(&session.attributes))
        .unwrap_or(Direction::SendRecv)
}

struct OfferedAudio {
    index: usize,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
    remote_rtp: SocketAddr,
    remote_rtcp: SocketAddr,
    ptime_ms: u32,
    remote_ptime_ms: Option<u32>,
    remote_maxptime_ms: Option<u32>,
    direction: Direction,
}

/// Finds the best audio stream in `description` for `ours`.
fn select_audio(
    description: &SessionDescription,
    ours: &[Codec],
) -> Result<OfferedAudio, NotAcceptable> {
    let mut saw_audio = false;
    let mut secure = None;
    let mut offered_names = Vec::new();
    for (index, media) in description.media_descriptions.iter().enumerate() {
        if media.media_name.media != "audio" || media.media_name.port.value == 0 {
            continue;
        }
        saw_audio = true;
        let proto = media.media_name.protos.join("/");
        if proto != "RTP/AVP" && proto != "RTP/AVPF" {
            secure = Some(proto);
            continue;
        }
        let rtpmaps = media.codecs();
        let formats: Vec<u8> = media
            .media_name
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .collect();
        let codec_of = |pt: u8| match rtpmaps.get(&pt) {
            Some(map) if !map.name.is_empty() => {
                Codec::from_encoding_name(&map.name, map.clock_rate)
            }
            _ => Codec::from_payload_type(pt),
        };
        for &pt in &formats {
            let name = match rtpmaps.get(&pt) {
                Some(map) if !map.name.is_empty() => format!("{}/{}", map.name, map.clock_rate),
                _ => pt.to_string(),
            };
            offered_names.push(name);
        }
        let Some((codec, payload_type)) = ours.iter().find_map(|wanted| {
            formats
                .iter()
                .find(|&&pt| codec_of(pt) == Some(*wanted))
                .map(|&pt| (*wanted, pt))
        }) else {
            continue;
        };
        let telephone_event = formats.iter().copied().find(|pt| {
            rtpmaps.get(pt).is_some_and(|m| {
                m.name.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        });
        let connection = media
            .connection_information
            .as_ref()
            .or(description.connection_information.as_ref())
            .ok_or_else(|| NotAcceptable::BadConnection("no c= line".to_owned()))?;
        let address = connection_address(connection)?;
        let port = u16::try_from(media.media_name.port.value).map_err(|_| {
            NotAcceptable::BadConnection(format!("port {}", media.media_name.port.value))
        })?;
        let remote_rtp = SocketAddr::new(address, port);
        let remote_rtcp = match media.attribute("rtcp").flatten() {
            Some(value) => {
                let mut parts = value.split_whitespace();
                let rtcp_port = parts
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(port.wrapping_add(1));
                let rtcp_address = parts
                    .nth(2)
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .unwrap_or(address);
                SocketAddr::new(rtcp_address, rtcp_port)
            }
            None => SocketAddr::new(address, port.wrapping_add(1)),
        };
        let milliseconds = |name: &str| {
            media
                .attribute(name)
                .flatten()
                .and_then(|p| p.trim().parse::<u32>().ok())
        };
        // We always send 20 ms; what the far end announces only sizes our receive side.
        let ptime_ms = 20;
        let remote_ptime_ms = milliseconds("ptime").filter(|p| (10..=60).contains(p));
        let remote_maxptime_ms = milliseconds("maxptime").filter(|p| *p > 0);
        let mut direction = media_direction(media, description);
        // RFC 2543 hold: c=0.0.0.0 means "do not send to me".
        if address.is_unspecified() && direction == Direction::SendRecv {
            direction = Direction::SendOnly;
        }
        return Ok(OfferedAudio {
            index,
            codec,
            payload_type,
            telephone_event,
            remote_rtp,
            remote_rtcp,
            ptime_ms,
            remote_ptime_ms,
            remote_maxptime_ms,
            direction,
        });
    }
    if !saw_audio {
        return Err(NotAcceptable::NoAudio);
    }
    if offered_names.is_empty()
        && let Some(proto) = secure
    {
        return Err(NotAcceptable::SecureRtpOnly(proto));
    }
    Err(NotAcceptable::NoCommonCodec {
        offered: offered_names.join(", "),
    })
}

fn address_type(address: IpAddr) -> &'static str {
    if address.is_ipv4() { "IP4" } else { "IP6" }
}

fn session_skeleton(local: &LocalMedia) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "santral".to_owned(),
            session_id: local.session_id,
            session_version: local.session_version,
            network_type: "IN".to_owned(),
            address_type: address_type(local.address).to_owned(),
            unicast_address: local.address.to_string(),
        },
        session_name: "santral".to_owned(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".to_owned(),
            address_type: address_type(local.address).to_owned(),
            address: Some(Address {
                address: local.address.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        ..SessionDescription::default()
    }
}

fn audio_line(
    port: u16,
    payload_types: &[(u8, String)],
    extra: Vec<Attribute>,
) -> MediaDescription {
    let mut attributes: Vec<Attribute> = payload_types
        .iter()
        .map(|(pt, map)| Attribute::new("rtpmap".to_owned(), Some(format!("{pt} {map}"))))
        .collect();
    attributes.extend(extra);
    MediaDescription {
        media_name: MediaName {
            media: "audio".to_owned(),
            port: RangedPort {
                value: port as isize,
                range: None,
            },
            protos: vec!["RTP".to_owned(), "AVP".to_owned()],
            formats: payload_types.iter().map(|(pt, _)| pt.to_string()).collect(),
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes,
    }
}

fn rtpmap_of(codec: Codec) -> String {
    format!("{}/{}", codec.encoding_name(), codec.rtp_clock_rate())
}

/// Answers an SDP offer (RFC 3264 §6).
pub fn answer_offer(offer: &str, local: &LocalMedia) -> Result<Answer, NotAcceptable> {
    let description = parse(offer)?;
    let chosen = select_audio(&description, &local.codecs)?;
    let telephone_event = if local.telephone_event {
        chosen.telephone_event
    } else {
        None
    };
    let direction = chosen.direction.answer_to(local.direction);

    let mut answer = session_skeleton(local);
    for (index, media) in description.media_descriptions.iter().enumerate() {
        if index == chosen.index {
            let mut payload_types = vec![(chosen.payload_type, rtpmap_of(chosen.codec))];
            let mut extra = Vec::new();
            if let Some(pt) = telephone_event {
                payload_types.push((pt, "telephone-event/8000".to_owned()));
                extra.push(Attribute::new(
                    "fmtp".to_owned(),
                    Some(format!("{pt} 0-16")),
                ));
            }
            extra.push(Attribute::new(
                "ptime".to_owned(),
                Some(chosen.ptime_ms.to_string()),
            ));
            extra.push(Attribute::new(
                "maxptime".to_owned(),
                Some(MAX_RECEIVED_PTIME_MS.to_string()),
            ));
            extra.push(Attribute::new(direction.attribute().to_owned(), None));
            answer = answer.with_media(audio_line(local.rtp_port, &payload_types, extra));
        } else {
            // Declined stream: same media and proto, port 0, one format copied (RFC 3264 §6).
            let mut declined = MediaDescription {
                media_name: MediaName {
                    media: media.media_name.media.clone(),
                    port: RangedPort {
                        value: 0,
                        range: None,
                    },
                    protos: media.media_name.protos.clone(),
                    formats: media.media_name.formats.iter().take(1).cloned().collect(),
                },
                media_title: None,
                connection_information: None,
                bandwidth: vec![],
                encryption_key: None,
                attributes: vec![],
            };
            if declined.media_name.formats.is_empty() {
                declined.media_name.formats.push("0".to_owned());
            }
            answer = answer.with_media(declined);
        }
    }
    Ok(Answer {
        sdp: answer.marshal(),
        media: NegotiatedMedia {
            codec: chosen.codec,
            payload_type: chosen.payload_type,
            telephone_event_payload_type: telephone_event,
            remote_rtp: chosen.remote_rtp,
            remote_rtcp: chosen.remote_rtcp,
            ptime_ms: chosen.ptime_ms,
            remote_ptime_ms: chosen.remote_ptime_ms,
            remote_maxptime_ms: chosen.remote_maxptime_ms,
            direction,
        },
    })
}

/// Builds an offer listing all our codecs (for calling agents, leg B).
pub fn create_offer(local: &LocalMedia) -> String {
    let mut payload_types: Vec<(u8, String)> = local
        .codecs
        .iter()
        .map(|c| (c.static_payload_type(), rtpmap_of(*c)))
        .collect();
    let mut extra = Vec::new();
    if local.telephone_event {
        let pt = local.telephone_event_payload_type;
        payload_types.push((pt, "telephone-event/8000".to_owned()));
        extra.push(Attribute::new(
            "fmtp".to_owned(),
            Some(format!("{pt} 0-16")),
        ));
    }
    extra.push(Attribute::new("ptime".to_owned(), Some("20".to_owned())));
    extra.push(Attribute::new(
        "maxptime".to_owned(),
        Some(MAX_RECEIVED_PTIME_MS.to_string()),
    ));
    extra.push(Attribute::new(local.direction.attribute().to_owned(), None));
    session_skeleton(local)
        .with_media(audio_line(local.rtp_port, &payload_types, extra))
        .marshal()
}

/// Reads the answer to an offer we made with `local`.
pub fn accept_answer(answer: &str, local: &LocalMedia) -> Result<NegotiatedMedia, NotAcceptable> {
    let description = parse(answer)?;
    let chosen = select_audio(&description, &local.codecs)?;
    let telephone_event = if local.telephone_event {
        chosen.telephone_event
    } else {
        None
    };
    // In an answer the direction is already the far end's view of the agreement.
    let direction = match chosen.direction {
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        other => other,
    };
    Ok(NegotiatedMedia {
        codec: chosen.codec,
        payload_type: chosen.payload_type,
        telephone_event_payload_type: telephone_event,
        remote_rtp: chosen.remote_rtp,
        remote_rtcp: chosen.remote_rtcp,
        ptime_ms: chosen.ptime_ms,
        remote_ptime_ms: chosen.remote_ptime_ms,
        remote_maxptime_ms: chosen.remote_maxptime_ms,
        direction,
    })
}

/// Unspecified IPv4 address (for hold detection helpers and defaults).
pub const UNSPECIFIED_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia::new("127.0.0.1".parse().unwrap_or(UNSPECIFIED_V4), 30000)
    }

    /// A Yealink-style desk phone offer (G.722 first, no t= line missing here).
    const DESK_PHONE: &str = "v=0\r\no=- 20518 0 IN IP4 127.0.0.20\r\ns=SDP data\r\nc=IN IP4 127.0.0.20\r\nt=0 0\r\n\
m=audio 11796 RTP/AVP 9 0 8 18 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=ptime:20\r\na=sendrecv\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    /// A carrier (SBC) offer: A-law first, no t= line, rtcp attribute, telephone-event at 96.
    const CARRIER: &str = "v=0\no=SBC 1 1 IN IP4 127.0.0.30\ns=-\nc=IN IP4 127.0.0.30\n\
m=audio 40000 RTP/AVP 8 96\na=rtpmap:8 PCMA/8000\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\na=rtcp:40011\na=ptime:20\n";

    /// A browser offer: Opus only over DTLS-SRTP.
    const WEBRTC_OPUS: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";

    #[test]
    fn desk_phone_offer_is_answered_with_our_first_choice_and_telephone_event() {
        let answer = answer_offer(DESK_PHONE, &local());
        let answer = match answer {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(answer.media.codec, Codec::Pcmu);
        assert_eq!(answer.media.payload_type, 0);
        assert_eq!(answer.media.telephone_event_payload_type, Some(101));
        assert_eq!(
            answer.media.remote_rtp,
            "127.0.0.20:11796"
                .parse()
                .unwrap_or(SocketAddr::new(UNSPECIFIED_V4, 0))
        );
        assert_eq!(answer.media.remote_rtcp.port(), 11797);
        assert_eq!(answer.media.direction, Direction::SendRecv);
        assert!(
            answer.sdp.contains("m=audio 30000 RTP/AVP 0 101\r\n"),
            "{}",
            answer.sdp
        );
        assert!(answer.sdp.contains("a=rtpmap:101 telephone-event/8000"));
        assert!(answer.sdp.contains("c=IN IP4 127.0.0.1"));
        assert!(answer.sdp.contains("a=sendrecv"));
        // The answer itself parses.
        assert!(parse(&answer.sdp).is_ok());
    }

    #[test]
    fn preference_order_is_ours_and_g722_is_chosen_when_preferred() {
        let mut wideband = local();
        wideband.codecs = vec![Codec::G722, Codec::Pcma];
        let answer =
            answer_offer(DESK_PHONE, &wideband).map(|a| (a.media.codec, a.media.payload_type));
        assert_eq!(answer, Ok((Codec::G722, 9)));
    }

    #[test]
    fn carrier_offer_without_t_line_gets_pcma_dynamic_event_type_and_rtcp_port() {
        let answer = answer_offer(CARRIER, &local()).map(|a| a.media);
        let media = match answer {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(media.codec, Codec::Pcma);
        assert_eq!(media.payload_type, 8);
        assert_eq!(media.telephone_event_payload_type, Some(96));
        assert_eq!(media.remote_rtcp.port(), 40011);
    }

    #[test]
    fn offered_packet_time_sizes_reception_and_the_answer_keeps_sending_20_ms() {
        // A gateway asking for (and sending) 30 ms packets, up to 60 ms.
        let offer = CARRIER.replace("a=ptime:20\n", "a=ptime:30\na=maxptime:60\n");
        let answer = match answer_offer(&offer, &local()) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(answer.media.ptime_ms, 20);
        assert_eq!(answer.media.remote_ptime_ms, Some(30));
        assert_eq!(answer.media.remote_maxptime_ms, Some(60));
        assert!(answer.sdp.contains("a=ptime:20\r\n"), "{}", answer.sdp);
        assert!(answer.sdp.contains("a=maxptime:60\r\n"), "{}", answer.sdp);
        let session = crate::session::SessionConfig::from_negotiated(&answer.media);
        assert_eq!(session.jitter.expected_packet_ms, 30);

        // Nonsense or out-of-range values are ignored, not trusted.
        let odd = CARRIER.replace("a=ptime:20\n", "a=ptime:500\na=maxptime:x\n");
        let media = answer_offer(&odd, &local()).map(|a| a.media);
        assert_eq!(
            media.map(|m| (m.ptime_ms, m.remote_ptime_ms, m.remote_maxptime_ms)),
            Ok((20, None, None))
        );
        // Our own offers say the same.
        let ours = create_offer(&local());
        assert!(ours.contains("a=ptime:20\r\na=maxptime:60\r\n"), "{ours}");
    }

    #[test]
    fn webrtc_opus_only_offer_is_488_with_a_reason() {
        let error = answer_offer(WEBRTC_OPUS, &local()).map(|a| a.sdp);
        match error {
            Err(reason) => {
                assert_eq!(reason.status_code(), 488);
                assert!(
                    reason.reason().contains("secure RTP") || reason.reason().contains("opus"),
                    "{reason}"
                );
            }
            Ok(sdp) => panic!("unexpected answer {sdp}"),
        }
    }

    #[test]
    fn plain_rtp_offer_without_a_common_codec_lists_what_was_offered() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18 3\r\na=rtpmap:18 G729/8000\r\n";
        let error = answer_offer(offer, &local()).map(|a| a.sdp);
        assert_eq!(
            error,
            Err(NotAcceptable::NoCommonCodec {
                offered: "G729/8000, 3".to_owned()
            })
        );
    }

    #[test]
    fn hold_offers_get_mirrored_directions() {
        let hold = DESK_PHONE.replace("a=sendrecv", "a=sendonly");
        assert_eq!(
            answer_offer(&hold, &local()).map(|a| a.media.direction),
            Ok(Direction::RecvOnly)
        );
        let inactive = DESK_PHONE.replace("a=sendrecv", "a=inactive");
        let answer = answer_offer(&inactive, &local());
        assert_eq!(
            answer.as_ref().map(|a| a.media.direction),
            Ok(Direction::Inactive)
        );
        assert!(
            answer
                .map(|a| a.sdp.contains("a=inactive"))
                .unwrap_or(false)
        );
        let old_style = DESK_PHONE.replace("c=IN IP4 127.0.0.20", "c=IN IP4 0.0.0.0");
        assert_eq!(
            answer_offer(&old_style, &local()).map(|a| a.media.direction),
            Ok(Direction::RecvOnly)
        );
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let offer = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
        let mut ours = local();
        ours.address = "::1".parse().unwrap_or(UNSPECIFIED_V4);
        let answer = answer_offer(offer, &ours);
        let answer = match answer {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            answer.media.remote_rtp,
            "[::1]:6000"
                .parse()
                .unwrap_or(SocketAddr::new(UNSPECIFIED_V4, 0))
        );
        assert_eq!(answer.media.telephone_event_payload_type, None);
        assert!(answer.sdp.contains("c=IN IP6 ::1"));
    }

    #[test]
    fn video_line_is_declined_with_port_zero() {
        let offer = format!("{DESK_PHONE}m=video 11800 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let answer = answer_offer(&offer, &local())
            .map(|a| a.sdp)
            .unwrap_or_default();
        assert!(answer.contains("m=video 0 RTP/AVP 96"), "{answer}");
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        assert!(matches!(
            answer_offer("hello", &local()),
            Err(NotAcceptable::Unparseable(_))
        ));
        assert!(matches!(
            answer_offer("v=0\r\no=x\r\n", &local()),
            Err(NotAcceptable::Unparseable(_))
        ));
        let no_audio =
            "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n";
        assert_eq!(
            answer_offer(no_audio, &local()).map(|a| a.sdp),
            Err(NotAcceptable::NoAudio)
        );
    }

    #[test]
    fn our_offer_round_trips_through_an_answer() {
        let ours = local();
        let offer = create_offer(&ours);
        let mut far = LocalMedia::new("127.0.0.9".parse().unwrap_or(UNSPECIFIED_V4), 7000);
        far.codecs = vec![Codec::Pcma];
        let answer = answer_offer(&offer, &far)
            .map(|a| a.sdp)
            .unwrap_or_default();
        let agreed = accept_answer(&answer, &ours);
        assert_eq!(
            agreed
                .as_ref()
                .map(|m| (m.codec, m.payload_type, m.telephone_event_payload_type)),
            Ok((Codec::Pcma, 8, Some(101)))
        );
        assert_eq!(agreed.map(|m| m.remote_rtp.port()), Ok(7000));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = answer_offer(&text, &local());
        }

        #[test]
        fn mutated_offers_never_panic(cut in 0usize..400, junk in "[a-z0-9=: /\\r\\n]{0,40}") {
            let mut offer = DESK_PHONE.to_owned();
            let cut = cut.min(offer.len());
            let cut = (0..=cut).rev().find(|i| offer.is_char_boundary(*i)).unwrap_or(0);
            offer.insert_str(cut, &junk);
            let _ = answer_offer(&offer, &local());
        }
    }
}
