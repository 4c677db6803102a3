//! Kubernetes wiring: watches, reconcile, status writes, leader lease.
