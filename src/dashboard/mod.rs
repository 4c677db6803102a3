//! The dashboard: a web page of the Canaries a person may read, each release's
//! timeline, its metrics plotted canary beside primary, and buttons that decide gates.
//!
//! Served on loopback only, by `kubectl serin dashboard` (the user's kubeconfig
//! credentials read, and actions go through the approval API as the CLI's do) and by
//! `serin demo` (the local backend). Where the data come from is a [`Source`]; the
//! HTTP side ([`router`]) and the views ([`view`]) are the same for both.

mod assets;
mod cluster;
mod error;
mod http;
mod local;
mod source;
pub mod view;

pub use cluster::{ApiToken, ApprovalApi, ClusterSource, ClusterSourceOptions};
pub use error::DashboardError;
pub use http::{bind, router, serve, DashboardState, CSRF_HEADER};
pub use local::{DemoFeed, LocalSource};
pub use source::{Change, Listing, Source};

#[cfg(test)]
mod tests;
