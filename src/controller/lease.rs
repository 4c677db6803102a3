//! Leader election on a coordination.k8s.io Lease: only the holder writes.
//!
//! Updates carry the resourceVersion that was read, so two replicas racing for an
//! expired lease cannot both win: the loser gets 409 Conflict.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration_secs: i32,
}

fn micro(t: DateTime<Utc>) -> Option<MicroTime> {
    Timestamp::from_microsecond(t.timestamp_micros())
        .ok()
        .map(MicroTime)
}

fn to_chrono(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        duration_secs: i32,
    ) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            duration_secs,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Take or renew the lease. `Ok(true)`: we hold it until `now + duration`.
    pub async fn try_acquire_or_renew(&self, now: DateTime<Utc>) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs),
                    acquire_time: micro(now),
                    renew_time: micro(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let duration = chrono::Duration::seconds(i64::from(
            spec.lease_duration_seconds.unwrap_or(self.duration_secs),
        ));
        let expired = spec
            .renew_time
            .as_ref()
            .and_then(to_chrono)
            .is_none_or(|renewed| renewed + duration < now);
        if !ours && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let mut next = current.clone();
        let s = next.spec.get_or_insert_with(Default::default);
        s.renew_time = micro(now);
        s.lease_duration_seconds = Some(self.duration_secs);
        if !ours {
            s.holder_identity = Some(self.identity.clone());
            s.acquire_time = micro(now);
            s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{expect, fixture_response, not_found, MockApi};
    use chrono::TimeZone;
    use serde_json::json;

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/shop/leases";

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn creates_the_lease_when_missing() {
        let (status, body) = fixture_response("21-lease-create");
        let (client, mock) = MockApi::start(vec![
            expect(
                "GET",
                format!("{PATH}/serin-leader"),
                404,
                not_found("leases", "coordination.k8s.io", "serin-leader"),
            ),
            expect("POST", format!("{PATH}?"), status, body),
        ]);
        let lock = LeaseLock::new(
            Api::namespaced(client, "shop"),
            "serin-leader",
            "serin-7d9f-abc",
            15,
        );
        assert!(lock
            .try_acquire_or_renew(t("2026-11-22T14:30:00Z"))
            .await
            .unwrap());
        let log = mock.finish();
        let sent = log[1].body.clone().unwrap();
        assert_eq!(sent["spec"]["holderIdentity"], "serin-7d9f-abc");
        assert_eq!(sent["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(sent["spec"]["renewTime"], "2026-11-22T14:30:00.000000Z");
    }

    fn held_by(holder: &str, renew: &str, rv: &str) -> serde_json::Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "serin-leader", "namespace": "shop", "resourceVersion": rv},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "acquireTime": renew, "renewTime": renew, "leaseTransitions": 2}})
    }

    #[tokio::test]
    async fn a_live_lease_of_another_holder_is_left_alone() {
        let (client, mock) = MockApi::start(vec![expect(
            "GET",
            format!("{PATH}/serin-leader"),
            200,
            held_by("serin-other", "2026-11-22T14:29:50.000000Z", "7"),
        )]);
        let lock = LeaseLock::new(Api::namespaced(client, "shop"), "serin-leader", "me", 15);
        assert!(!lock
            .try_acquire_or_renew(t("2026-11-22T14:30:00Z"))
            .await
            .unwrap());
        mock.finish();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_with_the_read_resource_version_and_a_race_is_lost_cleanly() {
        let (status, body) = fixture_response("22-lease-update-stale-409");
        let (client, mock) = MockApi::start(vec![
            expect(
                "GET",
                format!("{PATH}/serin-leader"),
                200,
                held_by("serin-other", "2026-11-22T14:29:00.000000Z", "7"),
            ),
            expect("PUT", format!("{PATH}/serin-leader?"), status, body),
        ]);
        let lock = LeaseLock::new(Api::namespaced(client, "shop"), "serin-leader", "me", 15);
        assert!(!lock
            .try_acquire_or_renew(t("2026-11-22T14:30:00Z"))
            .await
            .unwrap());
        let log = mock.finish();
        let sent = log[1].body.clone().unwrap();
        assert_eq!(sent["metadata"]["resourceVersion"], "7");
        assert_eq!(sent["spec"]["holderIdentity"], "me");
        assert_eq!(sent["spec"]["leaseTransitions"], 3);
    }

    #[tokio::test]
    async fn the_holder_renews() {
        let (client, mock) = MockApi::start(vec![
            expect(
                "GET",
                format!("{PATH}/serin-leader"),
                200,
                held_by("me", "2026-11-22T14:29:55.000000Z", "9"),
            ),
            expect(
                "PUT",
                format!("{PATH}/serin-leader?"),
                200,
                held_by("me", "2026-11-22T14:30:00.000000Z", "10"),
            ),
        ]);
        let lock = LeaseLock::new(Api::namespaced(client, "shop"), "serin-leader", "me", 15);
        assert!(lock
            .try_acquire_or_renew(Utc.with_ymd_and_hms(2026, 11, 22, 14, 30, 0).unwrap())
            .await
            .unwrap());
        let sent = mock.finish()[1].body.clone().unwrap();
        assert_eq!(sent["spec"]["renewTime"], "2026-11-22T14:30:00.000000Z");
        assert_eq!(
            sent["spec"]["leaseTransitions"], 2,
            "renewal is not a transition"
        );
    }
}
