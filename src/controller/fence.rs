//! The leader's write fence: whether this replica may still write as the leader.
//!
//! The lease keeper opens the fence after each successful renewal of the Lease, until
//! `started + renew_deadline`, where `started` is when that renewal's request *began*
//! (the Lease record it wrote cannot have reached the API server earlier). Reconcilers
//! call [`Fence::check`] before they write; once the deadline has passed without a
//! newer renewal the fence is closed, even when the keeper itself is stalled (a paused
//! process, a hung request), because the check reads the clock, not the keeper.
//!
//! Why this is safe. A standby takes over only after `lease_duration` has passed on its
//! own monotonic clock since it last saw the Lease record change, and its takeover is
//! an update with the resourceVersion it read, so it succeeds only if the record it saw
//! change is still the latest one: the one the leader's last successful renewal wrote.
//! The standby saw that record no earlier than the renewal began, at `started`; so it
//! takes over no earlier than `started + lease_duration` as its clock measures, while
//! the leader stopped writing at `started + renew_deadline` as the leader's clock
//! measures. Only the *rates* of the two clocks enter, never their offsets (no node
//! compares another node's timestamps with its own): with rates within a factor
//! `1 ± ρ` of true time, the leader stops before the standby starts as long as
//! `renew_deadline · (1 + ρ) < lease_duration · (1 − ρ)`. The defaults (10 s, 15 s)
//! tolerate ρ up to 20 %; real clocks drift by parts per million.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Why this replica may not write as the leader.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    #[error("not the leader: this replica does not hold the leader Lease yet")]
    NotLeader,
    #[error(
        "no longer the leader: the Lease was not renewed within the renew deadline \
         ({deadline:?} since the start of the last successful renewal), so another \
         replica may take over; writes stop here"
    )]
    DeadlinePassed { deadline: Duration },
    #[error("no longer the leader: the leader Lease was lost; writes stop here")]
    Revoked,
}

impl Fenced {
    /// Bounded label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        "fenced"
    }
}

#[derive(Debug)]
struct State {
    /// Writes are allowed strictly before this instant; `None`: never renewed.
    until: Option<Instant>,
    revoked: bool,
}

#[derive(Debug)]
struct Inner {
    renew_deadline: Duration,
    state: Mutex<State>,
}

/// Shared by the lease keeper (which opens and revokes it) and the reconcilers (which
/// check it before writing). Cloning shares the same fence.
#[derive(Clone, Debug)]
pub struct Fence {
    /// `None`: no leader election, every replica writes.
    inner: Option<Arc<Inner>>,
}

impl Fence {
    /// Without leader election: always open.
    pub fn unfenced() -> Self {
        Self { inner: None }
    }

    /// A closed fence that each successful renewal opens for `renew_deadline`.
    pub fn new(renew_deadline: Duration) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                renew_deadline,
                state: Mutex::new(State {
                    until: None,
                    revoked: false,
                }),
            })),
        }
    }

    /// `Ok` while this replica may write as the leader.
    pub fn check(&self) -> Result<(), Fenced> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.until {
            _ if state.revoked => Err(Fenced::Revoked),
            None => Err(Fenced::NotLeader),
            Some(until) if Instant::now() < until => Ok(()),
            Some(_) => Err(Fenced::DeadlinePassed {
                deadline: inner.renew_deadline,
            }),
        }
    }

    /// A renewal whose request began at `started` succeeded: writes are allowed until
    /// `started + renew_deadline`. Never shortens the fence, never reopens a revoked one.
    pub fn renewed(&self, started: Instant) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.revoked {
            return;
        }
        let until = started + inner.renew_deadline;
        state.until = Some(state.until.map_or(until, |u| u.max(until)));
    }

    /// Leadership is lost: close the fence for good.
    pub fn revoke(&self) {
        if let Some(inner) = &self.inner {
            inner
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revoked = true;
        }
    }

    /// When the fence closes unless renewed again; `None` when closed or unfenced.
    pub fn valid_until(&self) -> Option<Instant> {
        let inner = self.inner.as_ref()?;
        let state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.revoked {
            return None;
        }
        state.until
    }
}

/// A client layer that refuses every write (anything but GET/HEAD) once the fence is
/// closed. Reconcilers check the fence too, for a clear error early; this layer makes it
/// a guarantee for every write the controller's client makes, including ones deep in
/// an adapter, between two of its requests.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> tower::Layer<S> for FenceLayer {
    type Service = FencedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FencedService {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// See [`FenceLayer`].
#[derive(Clone, Debug)]
pub struct FencedService<S> {
    inner: S,
    fence: Fence,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for FencedService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let write = !matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        if write {
            if let Err(e) = self.fence.check() {
                return Box::pin(async move { Err(Box::new(e) as BoxError) });
            }
        }
        let call = self.inner.call(req);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

/// A client for `config` whose writes stop when `fence` closes.
pub fn fenced_client(config: kube::Config, fence: &Fence) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&FenceLayer(fence.clone()))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unfenced_always_allows() {
        let f = Fence::unfenced();
        assert_eq!(f.check(), Ok(()));
        f.revoke();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(f.check(), Ok(()), "without leader election nothing fences");
        assert_eq!(f.valid_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_until_the_first_renewal_then_open_until_the_deadline() {
        let f = Fence::new(Duration::from_secs(10));
        assert_eq!(f.check(), Err(Fenced::NotLeader));
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await; // the request took 3 s
        f.renewed(started);
        let shared = f.clone();
        tokio::time::advance(Duration::from_millis(6999)).await;
        assert_eq!(shared.check(), Ok(()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            shared.check(),
            Err(Fenced::DeadlinePassed {
                deadline: Duration::from_secs(10)
            }),
            "10 s after the renewal *began*, not after it ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_renewal_never_shortens_and_revoke_is_final() {
        let f = Fence::new(Duration::from_secs(10));
        let early = Instant::now();
        tokio::time::advance(Duration::from_secs(4)).await;
        f.renewed(Instant::now());
        f.renewed(early);
        assert_eq!(f.valid_until(), Some(early + Duration::from_secs(14)));
        f.revoke();
        assert_eq!(f.check(), Err(Fenced::Revoked));
        f.renewed(Instant::now());
        assert_eq!(f.check(), Err(Fenced::Revoked));
        assert!(Fenced::Revoked.to_string().contains("writes stop"));
    }
}
