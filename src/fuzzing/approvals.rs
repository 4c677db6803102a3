//! What a caller sends to decide a release: an approval API request, and a Slack
//! interaction.

use axum::http::{header, HeaderMap, HeaderValue};

use super::{bounded, Bytes};
use crate::gates::{
    bearer, check_names, decision_of, parse_payload, parse_verb, read_click,
    verify_slack_signature, SlackIdentities,
};

/// An approval API request: NUL-separated namespace, name, action, `Authorization`
/// header value, then the body. Read as `POST /api/v1/namespaces/{ns}/canaries/
/// {name}/{action}` reads it before and after the reviews.
pub fn approval_request(data: &[u8]) {
    let mut fields = data.splitn(5, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (ns, name, action, auth) = (text(), text(), text(), text());
    let body = data.splitn(5, |&b| b == 0).nth(4).unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(auth.as_bytes()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    match bearer(&headers) {
        Ok(token) => assert!(!token.is_empty() && token.trim() == token),
        Err(e) => bounded("an API error", e.message()),
    }
    let verb = match parse_verb(&action) {
        Ok(v) => Some(v),
        Err(e) => {
            bounded("an API error", e.message());
            None
        }
    };
    if let Err(e) = check_names(&ns, &name) {
        bounded("an API error", e.message());
    } else {
        assert!(ns.len() <= 253 && name.len() <= 253);
    }
    if let Some(verb) = verb {
        match decision_of(verb, body) {
            Ok(d) => assert_eq!(d.verb, verb),
            Err(e) => bounded("an API error", e.message()),
        }
    }
}

/// The controller's Slack signing secret in these runs.
const SECRET: &[u8] = b"fuzz-signing-secret";

/// A Slack request: the `X-Slack-Request-Timestamp` line, the `X-Slack-Signature` line,
/// then the form body. The signature is checked (a forged one must fail), and the body
/// is read as if it had passed, so the fuzzer reaches the payload and the button.
/// A first byte `\x01` instead makes the rest the Slack identity mapping file.
pub fn slack_request(data: &[u8]) {
    if let Some(rest) = data.strip_prefix(b"\x01") {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = SlackIdentities::parse(text);
        }
        return;
    }
    let mut input = Bytes(data);
    let ts = String::from_utf8_lossy(input.line()).into_owned();
    let sig = String::from_utf8_lossy(input.line()).into_owned();
    let body = input.rest();
    let now = 1_795_348_800;
    // The fuzzer cannot know the HMAC of its input: anything it sends is refused.
    assert!(
        verify_slack_signature(SECRET, &ts, &sig, body, now).is_err(),
        "a forged request verified"
    );
    let payload = match parse_payload(body) {
        Ok(p) => p,
        Err(e) => {
            bounded("a Slack error", &e.to_string());
            return;
        }
    };
    let identities = SlackIdentities::parse(
        "users:\n- {slackUserId: U0APPROVER, username: alice@example.com, groups: [shop-approvers]}\n- {slackUserId: U0TEAMED, teamId: T0SHOP, username: bob}\n",
    )
    .expect("a valid mapping");
    match read_click(&payload, &identities) {
        Ok(click) => {
            // Only a mapped user gets through, as the identity mapped.
            assert!(["U0APPROVER", "U0TEAMED"].contains(&click.slack_id));
            assert!(click.ns.len() <= 253 && click.name.len() <= 253);
            bounded("a gate revision", &click.gate.revision);
        }
        Err(text) => bounded("a Slack answer", &text),
    }
}
