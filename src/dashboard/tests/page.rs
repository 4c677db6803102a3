use serde_json::json;

use super::{canary_json, World};
use crate::testing::apiserver::Rbac;

#[tokio::test]
async fn the_page_runs_only_its_own_scripts_and_keeps_to_itself() {
    let w = World::start(true).await;
    let r = w.page.http.get(&w.page.url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    // No inline script: every <script> loads a file of ours, and no CDN.
    for tag in html.split("<script").skip(1) {
        assert!(tag.trim_start().starts_with("src=\"/assets/"), "{tag}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in [
        "app.js",
        "charts.js",
        "app.css",
        "uPlot.iife.min.js",
        "uPlot.min.css",
    ] {
        let url = format!("{}assets/{asset}", w.page.url);
        let r = w.page.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let etag = r.headers()["etag"].clone();
        let again = w
            .page
            .http
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{asset}");
    }
    // A name that is a path (encoded so that it reaches the handler) is no asset.
    let (status, body) = w.page.get("assets/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn another_host_name_is_refused_against_dns_rebinding() {
    let w = World::start(true).await;
    let port = w
        .page
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let r = w
        .page
        .http
        .get(format!("{}api/canaries", w.page.url))
        .header("host", format!("attacker.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let ok = w
        .page
        .http
        .get(format!("{}api/canaries", w.page.url))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn the_list_shows_what_the_user_may_read_and_a_refusal_as_such() {
    let w = World::start(true).await;
    w.server.insert(canary_json(
        "podinfo",
        "WaitingApproval",
        Some("beforePromotion"),
    ));
    let mut other = canary_json("cart", "Succeeded", None);
    other["metadata"]["namespace"] = "shop2".into();
    w.server.insert(other);
    let (status, list) = w.page.get("api/canaries").await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<String> = list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["shop/podinfo", "shop2/cart"]);
    assert_eq!(list["rows"][0]["waiting"], "approval at beforePromotion");
    assert_eq!(list["source"], "cluster kind-test");

    // Reading Canaries is refused for this user: the API server's 403 reaches the page.
    w.server
        .set_rbac(Some(Rbac::deny_all().with_user("alice@example.com")));
    let (status, body) = w.page.get("api/canaries").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("alice@example.com") && msg.contains("canaries"),
        "the API server's own words: {msg}"
    );
    let (status, body) = w.page.get("api/canaries/shop/podinfo").await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn only_one_namespace_readable_shows_that_namespace_with_a_note() {
    let w = World::start(true).await;
    w.server.insert(canary_json("podinfo", "Succeeded", None));
    // May list in shop (a Role there), not across namespaces: the fake's RBAC has no
    // namespaces, so the cluster-wide list is refused by a hook instead.
    w.server.set_hook(Box::new(|req, _ctl| {
        (req.verb == "list" && req.resource == "canaries" && req.namespace.is_none()).then(|| {
            (
                403,
                crate::testing::apiserver::status(
                    403,
                    "Forbidden",
                    "canaries.serin.dev is forbidden: User \"alice\" cannot list resource \
                     \"canaries\" in API group \"serin.dev\" at the cluster scope",
                ),
            )
        })
    }));
    let (status, list) = w.page.get("api/canaries").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["rows"].as_array().unwrap().len(), 1);
    let note = list["notes"][0].as_str().unwrap();
    assert!(note.contains("showing namespace shop"), "{note}");
}

#[tokio::test]
async fn the_release_page_has_points_timeline_and_actions() {
    let w = World::start(true).await;
    let mut c = canary_json("podinfo", "WaitingApproval", Some("beforePromotion"));
    c["status"]["metrics"] = json!([{"name": "errors", "verdict": "Pass", "reason": "ok",
        "checkedAt": "2026-11-22T10:04:00Z", "value": 0.01, "baseline": 0.012,
        "points": [{"at": "2026-11-22T10:02:00Z", "value": 0.011, "baseline": 0.012,
                    "limit": 0.024, "verdict": "Pass"}]}]);
    w.server.insert(c);
    let (status, d) = w.page.get("api/canaries/shop/podinfo").await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"]["metrics"][0]["points"][0]["limit"], 0.024);
    assert_eq!(d["actions"][0]["verb"], "approve");
    assert_eq!(d["actions"][0]["passage"]["gate"], "beforePromotion");
    assert!(
        d["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "{d}"
    );
    assert!(d["eventsError"].is_null(), "{d}");
    let (status, body) = w.page.get("api/canaries/shop/nothing").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = w.page.get("api/canaries/Shop!/x").await;
    assert_eq!(status, 422, "{body}");
}
