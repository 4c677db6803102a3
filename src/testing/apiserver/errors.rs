//! `Status` error bodies worded like the real server's.

use serde_json::{json, Value};

use super::resources::ResourceType;

/// An error answer: HTTP code and body (a `Status`, or a string for text/plain).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

pub type Result<T> = std::result::Result<T, ApiError>;

pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

fn err(code: u16, reason: &str, message: &str, details: Option<Value>) -> ApiError {
    ApiError {
        code,
        body: status(code, reason, message, details),
    }
}

/// `{name, group, kind: <plural>}`, group left out for the core group, as the server does.
fn resource_details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    let msg = format!("{} \"{name}\" not found", rt.qualified_resource());
    err(404, "NotFound", &msg, Some(resource_details(rt, name)))
}

pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
    let msg = format!("{} \"{name}\" already exists", rt.qualified_resource());
    err(409, "AlreadyExists", &msg, Some(resource_details(rt, name)))
}

/// A stale resourceVersion (fixtures 05 and 22).
pub fn modified(rt: &ResourceType, name: &str) -> ApiError {
    conflict(rt, name, "the object has been modified; please apply your changes to the latest version and try again")
}

pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> ApiError {
    let msg = format!(
        "Operation cannot be fulfilled on {} \"{name}\": {why}",
        rt.qualified_resource()
    );
    err(409, "Conflict", &msg, Some(resource_details(rt, name)))
}

/// A server-side apply conflict (fixture 07): causes per field, no name in details.
pub fn apply_conflict(message: String, causes: &[(String, String)]) -> ApiError {
    let causes: Vec<Value> = causes
        .iter()
        .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p}))
        .collect();
    err(409, "Conflict", &message, Some(json!({"causes": causes})))
}

pub fn bad_request(message: &str) -> ApiError {
    err(400, "BadRequest", message, None)
}

/// A known API group without this resource (or subresource).
pub fn no_resource() -> ApiError {
    err(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

/// An API group/version the server does not serve at all: the real server's mux answers
/// in plain text, not with a `Status`.
pub fn page_not_found() -> ApiError {
    ApiError {
        code: 404,
        body: Value::String("404 page not found\n".into()),
    }
}

pub fn method_not_allowed(message: &str) -> ApiError {
    err(405, "MethodNotAllowed", message, Some(json!({})))
}

pub fn unsupported_media_type(builtin: bool) -> ApiError {
    let mut accepted = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    if builtin {
        accepted.push("application/strategic-merge-patch+json");
    }
    let msg = format!(
        "the body of the request was in an unknown format - accepted media types include: {}",
        accepted.join(", ")
    );
    err(415, "UnsupportedMediaType", &msg, Some(json!({})))
}

/// A patch that cannot be applied (JSON patch `test` failing, missing path).
pub fn unprocessable(message: &str) -> ApiError {
    err(422, "Invalid", message, Some(json!({})))
}

/// One validation failure, rendered like apimachinery's field.Error.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub field: String,
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueTooLong`, `FieldValueForbidden`.
    pub reason: &'static str,
    /// The cause message: `Required value`, `Invalid value: "x": detail`, ...
    pub message: String,
}

impl Cause {
    pub fn required(field: &str, detail: &str) -> Cause {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            message,
        }
    }

    /// `value` is already in Go's rendering (`"x"` for strings, `-1`, `map[string]string{...}`).
    pub fn invalid(field: &str, value: &str, detail: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub fn too_long(field: &str, max: usize) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Cause {
        Cause {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// 422 `<Kind>.<group> "<name>" is invalid: <field>: <message>` (several in `[...]`).
pub fn invalid(rt: &ResourceType, name: &str, causes: &[Cause]) -> ApiError {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let what = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let msg = format!("{} \"{name}\" is invalid: {what}", rt.qualified_kind());
    let mut details = json!({"name": name, "kind": rt.kind,
        "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()});
    if !rt.validation_group().is_empty() {
        details["group"] = json!(rt.validation_group());
    }
    err(422, "Invalid", &msg, Some(details))
}
