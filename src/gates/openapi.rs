//! The API's OpenAPI 3 document, written by hand beside the routes it describes
//! (a test walks every documented path against the router).

use serde_json::{json, Map, Value};

use super::record::Verb;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn params() -> Value {
    json!([
        {"name": "ns", "in": "path", "required": true, "schema": {"type": "string"},
         "description": "Namespace of the Canary"},
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
         "description": "Name of the Canary"}
    ])
}

fn describe(verb: Verb) -> &'static str {
    match verb {
        Verb::Approve => "Approve the pending gate (status.pendingGate) of the release in flight, or the approvals a release policy waits for (status.policyWait.approvals; one record per approver, with their groups).",
        Verb::Reject => "Reject the pending gate: the release is rolled back.",
        Verb::Abort => "Roll back the release in flight now.",
        Verb::Retry => "Release the last rolled-back revision again.",
        Verb::Pause => "Pause the release (spec.suspend=true); the deadline clock stops.",
        Verb::Resume => "Resume a paused release (spec.suspend=false).",
        Verb::Override => "Emergency override: lift the release windows and blackouts of every release policy for the revision that waits or is in flight (recorded in status.emergencyOverride and announced).",
    }
}

/// `POST .../release`: new images for the target Deployment's containers.
fn release_operation() -> Value {
    json!({
        "operationId": "releaseCanary",
        "summary": "Register a release: set images on the Canary's target Deployment.",
        "description": format!(
            "Requires RBAC {} on canaries/{} (group serin.dev) in the namespace. The controller \
             applies only spec.template.spec.containers[].image of the named containers \
             (not init containers) with server-side apply as field manager {}; the Canary's \
             release policies then decide whether the release starts now or waits. Everything \
             is checked before anything is written.",
            super::record::ACTION_RBAC_VERB,
            super::auth::RELEASE_SUBRESOURCE,
            super::register::RELEASE_FIELD_MANAGER,
        ),
        "parameters": params(),
        "security": [{"bearer": []}],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReleaseRequest"}}}
        },
        "responses": {
            "200": {"description": "The containers already run these images; nothing written",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Registered"}}}},
            "202": {"description": "Images written; the controller decides when the release starts",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Registered"}}}},
            "401": error_response("No or invalid bearer token, or one not issued for the API's audience"),
            "403": error_response("RBAC denies create on canaries/release"),
            "404": error_response("No such Canary"),
            "409": error_response("The target Deployment does not exist, or kept changing during the write"),
            "422": error_response("Malformed body, an image that is not a valid reference, or a container the Deployment does not have"),
            "429": error_response("Rate limited; see Retry-After"),
            "503": error_response("The controller could not review the request or write the Deployment"),
        }
    })
}

/// The OpenAPI 3.0 document served at `/openapi.json`.
pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    paths.insert(
        "/api/v1/namespaces/{ns}/canaries/{name}".into(),
        json!({"get": {
            "operationId": "getCanary",
            "summary": "The release state a human decides on: phase, pending gate, metrics, records.",
            "parameters": params(),
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The Canary's decision view",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CanaryView"}}}},
                "401": error_response("No or invalid bearer token"),
                "403": error_response("RBAC denies get on canaries"),
                "404": error_response("No such Canary"),
                "422": error_response("Malformed namespace or name"),
                "429": error_response("Rate limited; see Retry-After"),
            }
        }}),
    );
    for verb in Verb::ALL {
        let needs = format!(
            "{} on canaries/{} (group serin.dev)",
            super::record::ACTION_RBAC_VERB,
            verb.subresource()
        );
        let mut op = json!({
            "operationId": format!("{}Canary", verb.as_str()),
            "summary": describe(verb),
            "description": format!("Requires RBAC {needs} in the namespace. Idempotent: a repeat answers 200 with changed=false."),
            "parameters": params(),
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "Recorded (or already recorded)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Outcome"}}}},
                "401": error_response("No or invalid bearer token, or one not issued for the API's audience"),
                "403": error_response("RBAC denies the action"),
                "404": error_response("No such Canary"),
                "409": error_response("The Canary is not in a state for this action (no gate pending, stale gate, decided otherwise)"),
                "422": error_response("Malformed request"),
                "429": error_response("Rate limited; see Retry-After"),
                "503": error_response("The controller could not review the request with the Kubernetes API"),
            }
        });
        if matches!(verb, Verb::Approve | Verb::Reject) {
            op["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GateRef"}}}
            });
        }
        if verb == Verb::Override {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OverrideRequest"}}}
            });
        }
        paths.insert(
            format!(
                "/api/v1/namespaces/{{ns}}/canaries/{{name}}/{}",
                verb.as_str()
            ),
            json!({"post": op}),
        );
    }
    paths.insert(
        "/api/v1/namespaces/{ns}/canaries/{name}/release".into(),
        json!({"post": release_operation()}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "summary": "This document",
                        "responses": {"200": {"description": "OpenAPI 3 document"}}}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "serin gates API",
            "version": "v1",
            "description": "Approve, reject, abort, retry, pause and resume serin Canary releases, \
                and register new releases (images) from CI. \
                Authenticate with a Kubernetes bearer token issued for the API's audience \
                (TokenReview, default audience serin); the cluster's RBAC decides \
                (SubjectAccessReview on a virtual subresource of the Canary per action)."
        },
        "paths": Value::Object(paths),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "A Kubernetes token for the API's audience, e.g. `kubectl create token SA --audience serin`"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"], "properties": {
                    "error": {"type": "string", "enum": ["unauthenticated", "forbidden", "not_found",
                        "conflict", "invalid", "rate_limited", "unavailable", "kube"]},
                    "message": {"type": "string"}}},
                "Outcome": {"type": "object", "required": ["changed", "message"], "properties": {
                    "changed": {"type": "boolean", "description": "false when already recorded"},
                    "id": {"type": "string", "description": "id of the status.approvals or status.commands record"},
                    "message": {"type": "string"}}},
                "GateRef": {"type": "object", "description": "The gate passage the caller saw; all three or none",
                    "properties": {
                        "gate": {"type": "string", "enum": crate::crd::GateKind::ALL.map(crate::crd::GateKind::as_str)},
                        "revision": {"type": "string"},
                        "step": {"type": "integer"}}},
                "OverrideRequest": {"type": "object", "required": ["reason"],
                    "additionalProperties": false, "properties": {
                    "reason": {"type": "string", "minLength": 1, "maxLength": 256,
                        "description": "Why the windows and blackouts are overridden (shown in status, Events and notifications)"},
                    "for": {"type": "string",
                        "description": "How long, e.g. 2h (at most 7 days); absent: until the release ends"}}},
                "ReleaseRequest": {"type": "object", "required": ["images"],
                    "additionalProperties": false, "properties": {
                    "images": {"type": "object", "minProperties": 1,
                        "maxProperties": super::register::RELEASE_IMAGES_MAX,
                        "additionalProperties": {"type": "string", "maxLength": 512,
                            "description": super::image_ref::IMAGE_REF_FORMAT},
                        "description": "Container name to image reference"},
                    "reason": {"type": "string",
                        "maxLength": super::register::RELEASE_REASON_MAX_CHARS,
                        "description": "Free text (e.g. the CI run), logged and echoed"}}},
                "Registered": {"type": "object", "required": ["changed", "deployment", "images", "message"],
                    "properties": {
                    "changed": {"type": "boolean", "description": "false when the images were already set"},
                    "deployment": {"type": "string", "description": "namespace/name of the target Deployment"},
                    "images": {"type": "object", "additionalProperties": {"type": "string"}},
                    "reason": {"type": "string"},
                    "message": {"type": "string"}}},
                "CanaryView": {"type": "object", "properties": {
                    "namespace": {"type": "string"}, "name": {"type": "string"},
                    "phase": {"type": "string"}, "suspend": {"type": "boolean"},
                    "skipAnalysis": {"type": "boolean"},
                    "pendingGate": {"type": "string", "nullable": true},
                    "stableRevision": {"type": "string", "nullable": true},
                    "canaryRevision": {"type": "string", "nullable": true},
                    "failedRevision": {"type": "string", "nullable": true},
                    "currentStep": {"type": "integer"}, "canaryWeight": {"type": "integer"},
                    "message": {"type": "string"},
                    "metrics": {"type": "array", "items": {"type": "object"}},
                    "approvals": {"type": "array", "items": {"type": "object"}},
                    "commands": {"type": "array", "items": {"type": "object"}}}}
            }
        }
    })
}
