use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Router-specific settings of a Canary. Each router reads only its own part.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {}
