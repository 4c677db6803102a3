//! Tests of the gates together.

mod rbac;
