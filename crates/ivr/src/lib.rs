//! see Cargo.toml description
