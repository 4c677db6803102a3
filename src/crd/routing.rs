use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::annotations::AnnotationError;

/// Router-specific settings of a Canary. Each router reads only its own part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {}

/// Router-specific annotation keys (none yet besides `serin.dev/router`).
pub fn is_routing_annotation(_key: &str) -> bool {
    false
}

/// Router-specific settings from annotations.
pub fn routing_from_annotations(
    _a: &BTreeMap<String, String>,
) -> Result<RoutingSpec, Vec<AnnotationError>> {
    Ok(RoutingSpec::default())
}
