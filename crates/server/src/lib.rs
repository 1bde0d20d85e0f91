//! santral-server: the call-centre server that joins the SIP stack, the media engine, the IVR
//! and the ACD. This crate starts with the typed configuration every part reads.

pub mod admission;
pub mod agents;
pub mod call;
pub mod config;
pub mod http;
pub mod live;
pub mod node;
pub mod storage;
pub mod write_behind;
