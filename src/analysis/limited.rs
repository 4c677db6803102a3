//! Every query of a check waits for a permit of the controller-wide
//! [`KeyedLimiter`] (`--max-queries-in-flight`), keyed by the Canary's namespace and by
//! the Prometheus it asks: at most that many responses are read at once, whatever the
//! number of reconciles and metrics, and neither one namespace nor one Prometheus that
//! never answers holds more than half of them. The wait counts against the check's
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::crd::ProviderSpec;
use crate::limits::KeyedLimiter;
use crate::providers::{MetricError, MetricSource, MetricSources, ProviderCredentials};

/// `inner`'s sources, each query under a permit for `namespace`.
pub(super) struct Limited<'a> {
    pub inner: &'a dyn MetricSources,
    pub limiter: Arc<KeyedLimiter>,
    pub namespace: String,
}

struct LimitedSource {
    inner: Arc<dyn MetricSource>,
    limiter: Arc<KeyedLimiter>,
    /// `namespace:<ns>` and `provider:<address>`, in that order.
    keys: [String; 2],
}

impl LimitedSource {
    async fn permit(&self) -> crate::limits::KeyedPermit {
        self.limiter
            .acquire(&[self.keys[0].as_str(), self.keys[1].as_str()])
            .await
    }
}

impl MetricSources for Limited<'_> {
    fn source(
        &self,
        provider: Option<&ProviderSpec>,
        credentials: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        let inner = self.inner.source(provider, credentials)?;
        let address = provider.and_then(|p| p.address()).unwrap_or("(default)");
        Ok(Arc::new(LimitedSource {
            inner,
            limiter: self.limiter.clone(),
            keys: [
                format!("namespace:{}", self.namespace),
                format!("provider:{address}"),
            ],
        }))
    }
}

#[async_trait]
impl MetricSource for LimitedSource {
    async fn query_scalar(&self, query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        let _permit = self.permit().await;
        self.inner.query_scalar(query, at).await
    }

    async fn query_vector(&self, query: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        let _permit = self.permit().await;
        self.inner.query_vector(query, at).await
    }

    fn answers_range_at_steps(&self) -> bool {
        self.inner.answers_range_at_steps()
    }

    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, MetricError> {
        let _permit = self.permit().await;
        self.inner.query_range(query, start, end, step).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::analysis::{run_check, CheckInput, MetricJudge, RenderVars, ResolvedMetric};
    use crate::crd::{MetricVerdict, PrometheusProviderSpec, ThresholdSpec};

    /// Queries now and the most ever at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Gauge {
        fn enter(&self) {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
        }
        fn leave(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// One Prometheus answering after a second, measured on its own and with all.
    struct Slow {
        own: Gauge,
        all: Arc<Gauge>,
    }

    #[async_trait]
    impl MetricSource for Slow {
        async fn query_scalar(&self, _q: &str, _at: DateTime<Utc>) -> Result<f64, MetricError> {
            self.own.enter();
            self.all.enter();
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.own.leave();
            self.all.leave();
            Ok(0.0)
        }
        async fn query_vector(&self, q: &str, at: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
            self.query_scalar(q, at).await.map(|v| vec![v])
        }
    }

    /// By provider address.
    struct Sources(BTreeMap<String, Arc<Slow>>);
    impl MetricSources for Sources {
        fn source(
            &self,
            p: Option<&ProviderSpec>,
            _c: Option<&ProviderCredentials>,
        ) -> Result<Arc<dyn MetricSource>, MetricError> {
            let address = &p.unwrap().prometheus.as_ref().unwrap().address;
            Ok(self.0[address].clone())
        }
    }

    fn metrics(n: usize, provider: &str) -> Vec<ResolvedMetric> {
        (0..n)
            .map(|i| ResolvedMetric {
                template: "t".into(),
                name: format!("m{i}"),
                query: format!("q{i}"),
                args: BTreeMap::new(),
                interval: None,
                judge: MetricJudge::Threshold(ThresholdSpec {
                    min: None,
                    max: Some(1.0),
                }),
                provider: Some(ProviderSpec {
                    prometheus: Some(PrometheusProviderSpec {
                        address: provider.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                dry_run: false,
                critical: false,
                credentials: None,
                failure_limit: None,
                inconclusive_limit: None,
                consecutive_error_limit: None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_metrics_of_all_checks_query_at_most_the_limit_and_a_slow_server_half() {
        let all = Arc::new(Gauge::default());
        let servers: BTreeMap<String, Arc<Slow>> = ["http://a", "http://b", "http://slow"]
            .into_iter()
            .map(|a| {
                let s = Slow {
                    own: Gauge::default(),
                    all: all.clone(),
                };
                (a.to_string(), Arc::new(s))
            })
            .collect();
        let sources = Sources(servers.clone());
        let limiter = Arc::new(KeyedLimiter::half_per_key(8));
        let now = Utc::now();
        // Four namespaces' checks of twelve metrics each, all at once; two of them ask
        // the slow server.
        let plan = [
            ("shop", "http://a"),
            ("blog", "http://b"),
            ("n1", "http://slow"),
            ("n2", "http://slow"),
        ];
        let checks = plan.map(|(ns, server)| {
            let vars = RenderVars {
                namespace: ns.into(),
                ..RenderVars::default()
            };
            let (sources, limiter) = (&sources, &limiter);
            let ms = metrics(12, server);
            async move {
                run_check(&CheckInput {
                    limiter: Some(limiter),
                    ..CheckInput::new(&ms, &vars, Duration::from_secs(60), &[], sources, now)
                })
                .await
            }
        });
        let reports = futures::future::join_all(checks).await;
        assert!(reports
            .iter()
            .all(|r| r.metrics.iter().all(|m| m.verdict == MetricVerdict::Pass)));
        assert_eq!(
            all.most.load(Ordering::SeqCst),
            8,
            "never more than the limit"
        );
        assert_eq!(
            servers["http://slow"].own.most.load(Ordering::SeqCst),
            4,
            "two namespaces on one server share its half"
        );
        assert_eq!(limiter.in_flight(), 0);
    }
}
