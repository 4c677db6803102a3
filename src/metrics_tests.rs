//! Tests of the metrics registry itself.
use super::*;
