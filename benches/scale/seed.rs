//! What the scale benchmark's mock API server starts with: annotated Deployments
//! spread over namespaces; the first `gated` of them wait for an approval before each
//! traffic increase (`serin.dev/gates: before-traffic-increase`).

use std::collections::HashMap;

use serde_json::{json, Value};

/// The cluster to simulate.
pub struct Seed {
    pub deployments: usize,
    pub namespaces: usize,
    pub interval: String,
    pub steps: String,
    /// Deployments 0..gated carry the approval gate.
    pub gated: usize,
}

/// A Deployment as a real API server returns it (managedFields included): ~4 kB.
pub fn deployment(ns: &str, name: &str, i: usize, version: &str, seed: &Seed) -> Value {
    let mut annotations = HashMap::new();
    annotations.insert("serin.dev/enabled", "true".to_string());
    annotations.insert("serin.dev/steps", seed.steps.clone());
    annotations.insert("serin.dev/interval", seed.interval.clone());
    annotations.insert("serin.dev/analysis", "error-rate".to_string());
    annotations.insert("deployment.kubernetes.io/revision", "1".to_string());
    if i < seed.gated {
        annotations.insert("serin.dev/gates", "before-traffic-increase".to_string());
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("dep-{i}"), "generation": 1,
            "creationTimestamp": "2026-11-22T14:23:08Z",
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop",
                       "serin.dev/shard": if i.is_multiple_of(2) { "a" } else { "b" }},
            "annotations": annotations,
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
                 "time": "2026-11-22T14:23:08Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:serin.dev/enabled": {}, "f:serin.dev/steps": {}, "f:serin.dev/interval": {}, "f:serin.dev/analysis": {}},
                                             "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}, "f:serin.dev/shard": {}}},
                              "f:spec": {"f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
                                         "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
                                         "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/name": {}}},
                                                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:livenessProbe": {}, "f:name": {}, "f:ports": {}, "f:readinessProbe": {}, "f:resources": {}}},
                                                                   "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
                 "time": "2026-11-22T14:23:08Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}},
                              "f:status": {"f:availableReplicas": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
                                                                                   "k:{\"type\":\"Progressing\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                                           "f:observedGeneration": {}, "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}}}
            ]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "app.kubernetes.io/name": name}},
                "spec": {
                    "containers": [{
                        "name": "app", "image": format!("registry.example.com/shop/app:{version}"),
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "OTEL_SERVICE_NAME", "value": name},
                                {"name": "DATABASE_URL", "value": format!("postgres://db.{ns}.svc:5432/app")}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent"
                    }],
                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                    "securityContext": {}, "schedulerName": "default-scheduler"
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600
        }
    })
}
