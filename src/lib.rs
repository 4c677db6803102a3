//! serin: a progressive-delivery controller for Kubernetes.
//!
//! The rollout state machine ([`rollout`]) and the judges ([`analysis`]) are sans-IO:
//! they take data and `now` and return decisions. Adapters ([`workloads`], [`traffic`],
//! [`providers`]) sit behind small traits; [`controller`] wires them to Kubernetes.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod annotations;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod demo;
pub mod error_kind;
#[doc(hidden)]
pub mod fuzzing;
pub mod gates;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod providers;
pub mod release;
pub mod rollout;
pub mod traffic;
pub mod workloads;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
