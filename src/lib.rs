//! serin: a progressive-delivery controller for Kubernetes.
//!
//! The rollout state machine ([`rollout`]), the CRD types ([`crd`]) and the judges
//! ([`analysis::judges`]) are sans-IO: they take data and `now` and return decisions.
//! They live in the `serin-core` crate, which has no I/O dependency to call. Adapters
//! ([`workloads`], [`traffic`], [`providers`]) sit behind small traits; [`controller`]
//! wires them to Kubernetes.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod annotations;
pub mod cli;
pub mod controller;
pub mod dashboard;
pub mod demo;
pub mod error_kind;
#[doc(hidden)]
pub mod fuzzing;
pub mod gates;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod providers;
pub mod release;
pub mod traffic;
pub mod workloads;

// The sans-IO core lives in its own crate; these keep every `serin::` path.
pub use serin_core::{crd, policy, rollout};

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
