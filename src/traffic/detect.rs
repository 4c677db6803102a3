//! Which routers this cluster can serve, discovered once at start-up from `GET /apis`.

use std::collections::BTreeSet;

use kube::Client;

use super::{RouterError, RouterKind};

/// The routers available given the served group versions (`group/version` strings).
pub fn available_from(group_versions: &BTreeSet<String>) -> Vec<RouterKind> {
    RouterKind::ALL
        .into_iter()
        .filter(|k| match k.facts().requires {
            None => true,
            Some(api) => group_versions.contains(&api.group_version()),
        })
        .collect()
}

/// Parse an `APIGroupList` (the body of `GET /apis`) into `group/version` strings.
pub fn group_versions(list: &serde_json::Value) -> BTreeSet<String> {
    list["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["versions"].as_array().into_iter().flatten())
        .filter_map(|v| v["groupVersion"].as_str().map(str::to_string))
        .collect()
}

/// Ask the API server which routers it can serve. Service and ingress-nginx need only
/// built-in APIs and are always listed.
pub async fn detect_routers(client: &Client) -> Result<Vec<RouterKind>, RouterError> {
    let list = client.list_api_groups().await?;
    let gvs = list
        .groups
        .iter()
        .flat_map(|g| g.versions.iter().map(|v| v.group_version.clone()))
        .collect();
    Ok(available_from(&gvs))
}

/// The error for a Canary asking for a router the cluster lacks (`None` when available).
pub fn check_available(
    requested: RouterKind,
    available: &[RouterKind],
    namespace: &str,
    name: &str,
) -> Result<(), RouterError> {
    if available.contains(&requested) {
        return Ok(());
    }
    let facts = requested.facts();
    let api = match facts.requires {
        Some(api) => format!("{} {} API", api.group_version(), api.kind),
        None => "API it needs".to_string(),
    };
    let install = facts.install_hint;
    let others: Vec<&str> = available.iter().map(|k| k.as_str()).collect();
    Err(RouterError::Config(format!(
        "router {} requested by Canary {namespace}/{name} but the cluster has no {api}; \
         {install} or set serin.dev/router (or spec.router) to one of: {}",
        requested.as_str(),
        others.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{expect, fixture, fixture_response, MockApi};

    #[test]
    fn fixture_cluster_has_every_router() {
        let (_, body) = fixture_response("27-discovery-apis");
        let gvs = group_versions(&body);
        assert!(gvs.contains("networking.istio.io/v1"));
        assert_eq!(available_from(&gvs), RouterKind::ALL.to_vec());
    }

    #[test]
    fn missing_groups_drop_their_routers() {
        let (_, mut body) = fixture_response("27-discovery-apis");
        let groups = body["groups"].as_array_mut().unwrap();
        groups.retain(|g| g["name"] != "networking.istio.io" && g["name"] != "split.smi-spec.io");
        // A Gateway API install that serves only v1beta1 is too old for serin.
        for g in groups
            .iter_mut()
            .filter(|g| g["name"] == "gateway.networking.k8s.io")
        {
            g["versions"]
                .as_array_mut()
                .unwrap()
                .retain(|v| v["version"] != "v1");
        }
        let avail = available_from(&group_versions(&body));
        assert_eq!(avail, vec![RouterKind::Service, RouterKind::IngressNginx]);
        let e = check_available(RouterKind::Istio, &avail, "shop", "podinfo").unwrap_err();
        assert_eq!(e.category(), "config");
        assert_eq!(
            e.to_string(),
            "router istio requested by Canary shop/podinfo but the cluster has no \
             networking.istio.io/v1 VirtualService API; install Istio or set serin.dev/router \
             (or spec.router) to one of: service, ingress-nginx"
        );
        assert!(check_available(RouterKind::Service, &avail, "shop", "podinfo").is_ok());
    }

    #[tokio::test]
    async fn detects_over_the_api() {
        let f = fixture("27-discovery-apis");
        let (client, mock) = MockApi::start(vec![expect(
            "GET",
            "/apis",
            200,
            f["response"]["body"].clone(),
        )]);
        let found = detect_routers(&client).await.unwrap();
        mock.finish();
        assert_eq!(found, RouterKind::ALL.to_vec());
    }
}
