//! A Secret given to `serin analyze` as a file, as `kubectl get secret NAME -o yaml`
//! prints it, for provider credentials outside the cluster.

use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::history::{AnalyzeError, SecretData};

/// Read and parse a Secret manifest: its name and data.
pub fn load_secret(path: &Path) -> Result<(String, SecretData), AnalyzeError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AnalyzeError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_secret(&text, &shown)
}

/// A Secret manifest's name and data; `stringData` is merged over `data`, as the API
/// server does on write.
pub fn parse_secret(text: &str, shown: &str) -> Result<(String, SecretData), AnalyzeError> {
    let parse_err = |message: String| AnalyzeError::Parse {
        path: shown.to_string(),
        message,
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    let head: Head = serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    if head.api_version != "v1" || head.kind != "Secret" {
        return Err(parse_err(format!(
            "apiVersion {:?} kind {:?}; accepted: apiVersion v1, kind Secret (as `kubectl get secret NAME -o yaml` prints it)",
            head.api_version, head.kind
        )));
    }
    let secret: Secret = serde_yaml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let name = secret
        .metadata
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| parse_err("metadata.name is missing".into()))?;
    let mut data = secret.data.unwrap_or_default();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    Ok((name, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_decoded_and_string_data_wins() {
        let (name, data) = parse_secret(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: datadog\n  namespace: shop\ndata:\n  api-key: YWJj\n  application-key: eHl6\nstringData:\n  application-key: plain\n",
            "s.yaml",
        )
        .unwrap();
        assert_eq!(name, "datadog");
        assert_eq!(data["api-key"].0, b"abc");
        assert_eq!(data["application-key"].0, b"plain");
    }

    #[test]
    fn other_documents_are_refused_with_what_is_accepted() {
        let err = parse_secret(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
            "cm.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cm.yaml") && err.contains("accepted: apiVersion v1, kind Secret"),
            "{err}"
        );
        let err = parse_secret("apiVersion: v1\nkind: Secret\ndata: {}\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metadata.name is missing"), "{err}");
        let err = parse_secret(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata:\n  k: '%%'\n",
            "s.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("s.yaml"), "{err}");
    }
}
