//! serin's sans-IO core: the custom resources ([`crd`]), the rollout state machine
//! ([`rollout`]), the judges ([`judges`]) and their statistics ([`stats`]).
//!
//! Everything here takes data and `now` and returns decisions. The crate depends on
//! no Kubernetes client, async runtime or HTTP stack, so the compiler (not a
//! convention) keeps I/O out.
#![forbid(unsafe_code)]

pub mod crd;
pub mod judges;
pub mod policy;
pub mod rollout;
pub mod stats;
