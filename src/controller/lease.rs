//! Leader election on a coordination.k8s.io Lease: only the holder writes.
//!
//! Updates carry the resourceVersion that was read, so two replicas racing for an
//! expired lease cannot both win: the loser gets 409 Conflict.
//!
//! Expiry is measured on this replica's own monotonic clock, as client-go does: a
//! standby remembers when it last saw the Lease record change and takes over only
//! after the record's lease duration has passed since then. The `renewTime` another
//! node wrote is never compared with the local wall clock, so clock offsets between
//! nodes (or a wall clock stepped by NTP) cannot make a live leader look expired.
//! See [`super::fence`] for how the leader stops writing before a standby may start.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;
use tokio::time::Instant;

use super::fence::Fence;
use super::run::RunError;

/// The leader-election timings, checked together because their order is what makes
/// leadership exclusive (see [`super::fence`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseTimingError {
    #[error(
        "lease renew deadline {renew} must be less than the lease duration {lease} \
         (--lease-renew-deadline < --lease-duration): the difference is the margin that \
         stops a stalled leader before a standby may take over"
    )]
    RenewDeadlineTooLong { renew: String, lease: String },
    #[error(
        "lease retry period {retry} must be less than the lease renew deadline {renew} \
         (--lease-retry-period < --lease-renew-deadline): the leader must get to retry a \
         failed renewal before its deadline"
    )]
    RetryPeriodTooLong { retry: String, renew: String },
    #[error("lease retry period must be more than zero (--lease-retry-period)")]
    ZeroRetryPeriod,
}

/// `renew_deadline < lease_duration` and `0 < retry_period < renew_deadline`.
pub fn check_timings(
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
) -> Result<(), LeaseTimingError> {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if retry_period.is_zero() {
        return Err(LeaseTimingError::ZeroRetryPeriod);
    }
    if renew_deadline >= lease_duration {
        return Err(LeaseTimingError::RenewDeadlineTooLong {
            renew: show(renew_deadline),
            lease: show(lease_duration),
        });
    }
    if retry_period >= renew_deadline {
        return Err(LeaseTimingError::RetryPeriodTooLong {
            retry: show(retry_period),
            renew: show(renew_deadline),
        });
    }
    Ok(())
}

/// The Lease records whole seconds: round up, so a standby never waits less than the
/// configured duration (rounding down could eat the leader's safety margin).
pub fn lease_duration_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

/// The Lease record as last seen, and when (on this replica's monotonic clock).
struct Observed {
    resource_version: Option<String>,
    spec: LeaseSpec,
    at: Instant,
}

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration_secs: i32,
    observed: Option<Observed>,
}

fn micro(t: DateTime<Utc>) -> Option<MicroTime> {
    Timestamp::from_microsecond(t.timestamp_micros())
        .ok()
        .map(MicroTime)
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
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Remember `lease` as seen at `at`; the clock restarts only when it changed.
    fn observe(&mut self, lease: &Lease, at: Instant) {
        let resource_version = lease.metadata.resource_version.clone();
        let spec = lease.spec.clone().unwrap_or_default();
        let unchanged = self
            .observed
            .as_ref()
            .is_some_and(|o| o.resource_version == resource_version && o.spec == spec);
        if !unchanged {
            self.observed = Some(Observed {
                resource_version,
                spec,
                at,
            });
        }
    }

    /// Take or renew the lease; `Ok(true)`: this replica holds it. `now` is only
    /// written into the record (for people and other tools); expiry is decided on the
    /// monotonic clock.
    pub async fn try_acquire_or_renew(&mut self, now: DateTime<Utc>) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        // Taken after the answer arrived: the record was written before this instant,
        // so the lease duration counts from no earlier than its writer's renewal.
        let seen = Instant::now();
        let Some(current) = current else {
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
                Ok(created) => {
                    self.observe(&created, Instant::now());
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&current, seen);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.identity.as_str());
        if holder.is_some() && !ours {
            // The holder's own duration: it is what the holder's fence was sized for.
            let secs = spec
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .unwrap_or(self.duration_secs);
            let since = self.observed.as_ref().map_or(seen, |o| o.at);
            let expired = seen >= since + Duration::from_secs(secs.unsigned_abs().into());
            if !expired {
                return Ok(false);
            }
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
            Ok(written) => {
                self.observe(&written, Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Block until this replica holds the lease (a standby looks every retry period), then
/// open the fence.
pub(super) async fn acquire_lease(lock: &mut LeaseLock, fence: &Fence, retry_period: Duration) {
    loop {
        // The fence counts from before the request: the record it writes cannot be
        // older than this.
        let started = tokio::time::Instant::now();
        match lock.try_acquire_or_renew(chrono::Utc::now()).await {
            Ok(true) => {
                fence.renewed(started);
                return;
            }
            Ok(false) => {}
            // A standby rides out API errors: restarting would only forget what it has
            // observed of the Lease and make the takeover later.
            Err(e) => tracing::warn!(error = %e, "reading the leader lease failed"),
        }
        tokio::time::sleep(retry_period).await;
    }
}

/// Renew the lease every retry period; returns (with the fence revoked) when the lease
/// is lost to another holder or the renew deadline passes without a successful
/// renewal. The fence closes at that deadline on its own, so writers stop even while
/// this task is stalled.
pub(super) async fn keep_lease(
    lock: &mut LeaseLock,
    fence: &Fence,
    retry_period: Duration,
) -> RunError {
    let identity = lock.identity().to_string();
    let lost = |why: &str| {
        fence.revoke();
        tracing::warn!(reason = why, "leadership lost; writes stop");
        RunError::LeaseLost(identity.clone())
    };
    loop {
        let Some(deadline) = fence.valid_until() else {
            return lost("the fence is closed");
        };
        // Never sleep past the deadline: a late renewal would be no use.
        let next = (tokio::time::Instant::now() + retry_period).min(deadline);
        tokio::time::sleep_until(next).await;
        if fence.check().is_err() {
            return lost("no successful renewal within the renew deadline");
        }
        let started = tokio::time::Instant::now();
        match tokio::time::timeout_at(deadline, lock.try_acquire_or_renew(chrono::Utc::now())).await
        {
            Ok(Ok(true)) => fence.renewed(started),
            Ok(Ok(false)) => return lost("another replica holds the lease"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lease renewal failed; retrying until the renew deadline")
            }
            Err(_) => return lost("the renewal did not finish before the renew deadline"),
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

    fn lock(client: kube::Client, identity: &str) -> LeaseLock {
        LeaseLock::new(
            Api::namespaced(client, "shop"),
            "serin-leader",
            identity,
            15,
        )
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
        let mut lock = lock(client, "serin-7d9f-abc");
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

    fn get(body: serde_json::Value) -> crate::testing::Exchange {
        expect("GET", format!("{PATH}/serin-leader"), 200, body)
    }

    #[tokio::test]
    async fn a_live_lease_of_another_holder_is_left_alone() {
        let (client, mock) = MockApi::start(vec![get(held_by(
            "serin-other",
            "2026-11-22T14:29:50.000000Z",
            "7",
        ))]);
        let mut lock = lock(client, "me");
        assert!(!lock
            .try_acquire_or_renew(t("2026-11-22T14:30:00Z"))
            .await
            .unwrap());
        mock.finish();
    }

    /// The holder's renewTime is years behind this replica's wall clock (its clock is
    /// off, or it writes something else there): what counts is that the record keeps
    /// changing, as this replica sees it on its own monotonic clock.
    #[tokio::test(start_paused = true)]
    async fn a_lease_seen_changing_is_live_however_old_its_renew_time() {
        let ancient = |s: &str| held_by("serin-other", s, "");
        let with_rv = |mut v: serde_json::Value, rv: &str| {
            v["metadata"]["resourceVersion"] = json!(rv);
            v
        };
        let (client, mock) = MockApi::start(vec![
            get(with_rv(ancient("2020-01-01T00:00:00.000000Z"), "7")),
            get(with_rv(ancient("2020-01-01T00:00:10.000000Z"), "8")),
            get(with_rv(ancient("2020-01-01T00:00:10.000000Z"), "8")),
            get(with_rv(ancient("2020-01-01T00:00:10.000000Z"), "8")),
            get(with_rv(ancient("2020-01-01T00:00:10.000000Z"), "8")),
            expect(
                "PUT",
                format!("{PATH}/serin-leader?"),
                200,
                held_by("me", "2026-11-22T14:30:25.000000Z", "9"),
            ),
        ]);
        let mut lock = lock(client, "me");
        let now = t("2026-11-22T14:30:00Z");
        let step = |secs: f64| tokio::time::advance(Duration::from_secs_f64(secs));
        assert!(!lock.try_acquire_or_renew(now).await.unwrap(), "first look");
        step(10.0).await;
        assert!(!lock.try_acquire_or_renew(now).await.unwrap(), "changed");
        step(10.0).await;
        assert!(
            !lock.try_acquire_or_renew(now).await.unwrap(),
            "20 s since first seen, but only 10 s since it last changed"
        );
        step(4.9).await;
        assert!(!lock.try_acquire_or_renew(now).await.unwrap(), "14.9 s");
        step(0.1).await;
        assert!(
            lock.try_acquire_or_renew(now).await.unwrap(),
            "15 s without a change: expired"
        );
        let sent = mock.finish()[5].body.clone().unwrap();
        assert_eq!(sent["metadata"]["resourceVersion"], "8");
        assert_eq!(sent["spec"]["holderIdentity"], "me");
    }

    /// A holder whose clock runs ahead writes renewTimes in this replica's future; it
    /// still expires after the lease duration without a change, and two standbys
    /// racing for it cannot both win: the update carries the resourceVersion read.
    #[tokio::test(start_paused = true)]
    async fn a_lease_unchanged_for_its_duration_is_taken_and_a_race_is_lost_cleanly() {
        let (status, body) = fixture_response("22-lease-update-stale-409");
        let future = held_by("serin-other", "2030-01-01T00:00:00.000000Z", "7");
        let (client, mock) = MockApi::start(vec![
            get(future.clone()),
            get(future),
            expect("PUT", format!("{PATH}/serin-leader?"), status, body),
        ]);
        let mut lock = lock(client, "me");
        let now = t("2026-11-22T14:30:00Z");
        assert!(!lock.try_acquire_or_renew(now).await.unwrap());
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(
            !lock.try_acquire_or_renew(now).await.unwrap(),
            "409: another standby was faster"
        );
        let log = mock.finish();
        let sent = log[2].body.clone().unwrap();
        assert_eq!(sent["metadata"]["resourceVersion"], "7");
        assert_eq!(sent["spec"]["holderIdentity"], "me");
        assert_eq!(sent["spec"]["leaseTransitions"], 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_is_taken_at_once() {
        let (client, mock) = MockApi::start(vec![
            get(held_by("", "2026-11-22T14:29:59.000000Z", "7")),
            expect(
                "PUT",
                format!("{PATH}/serin-leader?"),
                200,
                held_by("me", "2026-11-22T14:30:00.000000Z", "8"),
            ),
        ]);
        let mut lock = lock(client, "me");
        assert!(lock
            .try_acquire_or_renew(t("2026-11-22T14:30:00Z"))
            .await
            .unwrap());
        mock.finish();
    }

    #[tokio::test]
    async fn the_holder_renews() {
        let (client, mock) = MockApi::start(vec![
            get(held_by("me", "2026-11-22T14:29:55.000000Z", "9")),
            expect(
                "PUT",
                format!("{PATH}/serin-leader?"),
                200,
                held_by("me", "2026-11-22T14:30:00.000000Z", "10"),
            ),
        ]);
        let mut lock = lock(client, "me");
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

    #[test]
    fn timings_must_leave_a_margin_and_a_retry() {
        let s = Duration::from_secs;
        assert_eq!(check_timings(s(15), s(10), s(2)), Ok(()));
        let e = check_timings(s(15), s(15), s(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lease renew deadline 15s must be less than the lease duration 15s \
             (--lease-renew-deadline < --lease-duration): the difference is the margin that \
             stops a stalled leader before a standby may take over"
        );
        let e = check_timings(s(15), s(10), s(10)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "lease retry period 10s must be less than the lease renew deadline 10s"
            ),
            "{e}"
        );
        assert_eq!(
            check_timings(s(15), s(10), Duration::ZERO),
            Err(LeaseTimingError::ZeroRetryPeriod)
        );
    }

    #[test]
    fn the_recorded_duration_rounds_up() {
        assert_eq!(lease_duration_secs(Duration::from_secs(15)), 15);
        assert_eq!(lease_duration_secs(Duration::from_millis(15_200)), 16);
        assert_eq!(lease_duration_secs(Duration::from_millis(300)), 1);
    }
}
