//! santral-media: the media engine.
pub mod codec;
pub mod g711;
pub mod g722;
pub mod jitter;
mod wideband;
pub mod concealment;
pub mod dtmf_detector;
pub mod telephone_event;
pub mod tone;
pub mod sdp;
pub mod rtcp;
pub mod quality;
pub mod port;
pub mod pacer;
pub mod prompt;
pub mod session;
