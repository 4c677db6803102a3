//! Issue 13's test: twenty Canaries whose webhooks and Prometheus never answer, beside
//! one healthy Canary whose metric fails; the healthy one must still be rolled back
//! within its interval plus a small bound.
//!
//! The whole controller (`run`: watches, scheduler, 16 reconcile slots) runs against
//! the fake API server (watches held open, so it runs on its initial list and its own
//! requeues). The blackholes are real listeners on 127.0.0.1 that accept connections
//! and never answer. Time is tokio's paused clock, which the controller's clock
//! follows: every timeout (webhook attempts of 5m, the 10 s check, the 20 s reconcile
//! deadline) runs its full length in controller time, and the figures below are in
//! that time, not wall time.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use tokio::time::Instant;

use super::*;
use crate::controller::run::{run, RunOptions};
use crate::controller::{Fence, Routers};
use crate::crd::ProviderSpec;
use crate::providers::{
    MetricError, MetricSource, MetricSources, PrometheusSources, ProviderCredentials,
};
use crate::testing::apiserver::FakeApiServer;
use crate::traffic::{RouterKind, ServiceRouter, TrafficRouter};
use crate::workloads::deployments::KubeWorkloads;

const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const INTERVAL: Duration = Duration::from_secs(60);

/// A loopback listener that accepts every connection and never answers; counts them.
async fn blackhole() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(s);
        }
    });
    (url, accepted)
}

/// Templates naming a provider go to real Prometheus clients (the blackhole); the
/// healthy Canary's template names none and gets the scripted in-process source.
struct Routed {
    fake: Arc<FakeMetrics>,
    prometheus: PrometheusSources,
}

impl MetricSources for Routed {
    fn source(
        &self,
        p: Option<&ProviderSpec>,
        c: Option<&ProviderCredentials>,
    ) -> Result<Arc<dyn MetricSource>, MetricError> {
        match p.and_then(|p| p.prometheus.as_ref()) {
            Some(_) => self.prometheus.source(p, c),
            None => Ok(self.fake.clone()),
        }
    }
}

fn named(mut o: Value, ns: &str, name: &str) -> Value {
    o["metadata"]["namespace"] = json!(ns);
    o["metadata"]["name"] = json!(name);
    o
}

fn target(ns: &str, name: &str, image: &str) -> Value {
    let mut d = named(target_deployment(image, 3), ns, name);
    d["metadata"]["labels"] = json!({"app.kubernetes.io/name": name});
    d["spec"]["selector"]["matchLabels"] = json!({"app": name});
    d["spec"]["template"]["metadata"]["labels"] =
        json!({"app": name, "app.kubernetes.io/name": name});
    d
}

/// What each noisy Canary is blocked on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Noisy {
    /// At step 1, checks due: rollout and rollback hooks and its Prometheus blackholed.
    Checks,
    /// At step 0: its pre-rollout hook never answers.
    PreRollout,
    /// At the gate before rollout: its confirm hook never answers.
    Confirm,
}

fn noisy_spec(kind: Noisy, name: &str, hook: &str) -> Value {
    // The caps: 5m per attempt, 5 retries. Accepted, and never awaited by a reconcile.
    let h = |n: &str, t: &str| json!({"name": n, "type": t, "url": format!("{hook}/{n}"), "timeout": "5m", "retries": 5});
    let hooks = match kind {
        Noisy::Checks => vec![h("load", "rollout"), h("stop", "rollback")],
        Noisy::PreRollout => vec![h("conformance", "pre-rollout"), h("stop", "rollback")],
        Noisy::Confirm => vec![h("approve", "confirm-rollout")],
    };
    json!({"targetRef": {"name": name},
           "analysis": {"steps": [10, 50], "interval": "1m", "failureLimit": 5,
                        "progressDeadline": "1h", "templates": [{"name": "blackholed"}]},
           "webhooks": hooks})
}

struct Scenario {
    server: FakeApiServer,
    ctx: Arc<Context>,
    base: DateTime<Utc>,
    t0: Instant,
    canaries: Vec<(String, String, Noisy)>,
    prometheus_hits: Arc<std::sync::atomic::AtomicUsize>,
    hook_hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl Scenario {
    fn get(&self, plural: &str, ns: &str, name: &str) -> Value {
        let av = if plural == "canaries" {
            "serin.dev/v1alpha1"
        } else if plural == "services" {
            "v1"
        } else {
            "apps/v1"
        };
        self.server
            .get(av, plural, Some(ns), name)
            .unwrap_or(Value::Null)
    }

    async fn drive(&self, ns: &str, name: &str) {
        let mut c: Canary = serde_json::from_value(self.get("canaries", ns, name)).unwrap();
        c.metadata.namespace = Some(ns.into());
        reconcile_canary(Arc::new(c), self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"));
    }

    fn set_image(&self, ns: &str, name: &str) {
        let mut d = self.get("deployments", ns, name);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("podinfo:2");
        let m = d["metadata"].as_object_mut().unwrap();
        m.remove("managedFields");
        m.remove("resourceVersion");
        self.server.insert(d);
    }

    /// Controller time as an instant of tokio's clock.
    fn instant(&self, t: DateTime<Utc>) -> Instant {
        self.t0 + (t - self.base).to_std().unwrap()
    }
}

/// Twenty noisy Canaries in `noisy_namespaces` namespaces (16 with checks due a second
/// before the healthy one's, 2 at a pre-rollout hook, 2 at a confirm hook), initialized
/// and released by direct reconciles, then left to `run`.
async fn scenario(noisy_namespaces: usize) -> Scenario {
    let (prometheus, prometheus_hits) = blackhole().await;
    let (hook, hook_hits) = blackhole().await;
    let base = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let t0 = Instant::now();
    let server = FakeApiServer::new();
    server.set_time(base);
    server.set_recording(false);
    let mut canaries = vec![("shop".to_string(), "podinfo".to_string(), Noisy::Checks)];
    server.insert(target("shop", "podinfo", "podinfo:1"));
    server.insert(canary_object(json!({"targetRef": {"name": "podinfo"},
        "analysis": {"steps": [10, 50], "interval": "1m", "failureLimit": 1,
                     "templates": [{"name": "error-rate"}]}})));
    server.insert(error_rate_template());
    for i in 0..20 {
        let ns = if noisy_namespaces == 1 {
            "noisy".to_string()
        } else {
            format!("noisy-{}", i % noisy_namespaces)
        };
        let name = format!("app-{i}");
        let kind = match i {
            0..16 => Noisy::Checks,
            16..18 => Noisy::PreRollout,
            _ => Noisy::Confirm,
        };
        server.insert(target(&ns, &name, "podinfo:1"));
        server.insert(named(
            canary_object(noisy_spec(kind, &name, &hook)),
            &ns,
            &name,
        ));
        let mut t = named(error_rate_template(), &ns, "blackholed");
        t["spec"]["provider"] = json!({"prometheus": {"address": prometheus}});
        server.insert(t);
        canaries.push((ns, name, kind));
    }
    server.settle();
    server.set_hold_watches(true);
    let client = server.client();
    let fake = Arc::new(FakeMetrics::default());
    // The healthy canary's error rate: 20%, far over its 1% limit.
    *fake.value.lock().unwrap() = Some(Ok(0.2));
    let mut by_kind: HashMap<RouterKind, Arc<dyn TrafficRouter>> = HashMap::new();
    by_kind.insert(
        RouterKind::Service,
        Arc::new(ServiceRouter::new(client.clone())),
    );
    let clock: crate::controller::Clock =
        Arc::new(move || base + chrono::Duration::from_std(t0.elapsed()).unwrap());
    let ctx = Arc::new(Context {
        written: Default::default(),
        templates: None,
        policies: None,
        client: client.clone(),
        workloads: Arc::new(KubeWorkloads::new(client.clone())),
        routers: Routers {
            by_kind,
            default: RouterKind::Service,
        },
        sources: Arc::new(Routed {
            fake,
            prometheus: PrometheusSources::new(None, CHECK_TIMEOUT),
        }),
        events: Arc::new(MemoryEvents::default()),
        clock: clock.clone(),
        check_timeout: CHECK_TIMEOUT,
        reconcile_deadline: Duration::from_secs(20),
        queries: Some(Arc::new(crate::limits::KeyedLimiter::half_per_key(8))),
        controller_namespace: "serin-system".into(),
        webhooks: Some(Arc::new(new_runner(clock))),
        notify: None,
        metrics: Arc::new(crate::metrics::ControllerMetrics::new()),
        fence: Fence::unfenced(),
    });
    let s = Scenario {
        server,
        ctx,
        base,
        t0,
        canaries,
        prometheus_hits,
        hook_hits,
    };
    // Initialize everything, then release podinfo:2 everywhere: the noisy ones first,
    // the healthy one a second later, so that its check comes due while the sixteen
    // noisy checks already hold their slots and their queries.
    for (i, (ns, name, _)) in s
        .canaries
        .iter()
        .enumerate()
        .skip(1)
        .chain([(0, &s.canaries[0])])
    {
        if i == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        s.drive(ns, name).await;
        s.drive(ns, name).await;
        assert_eq!(
            s.get("canaries", ns, name)["status"]["phase"],
            "Initialized"
        );
        s.set_image(ns, name);
        s.drive(ns, name).await;
        s.drive(ns, name).await;
    }
    for (ns, name, kind) in &s.canaries {
        let st = &s.get("canaries", ns, name)["status"];
        let want = match kind {
            Noisy::Checks => ("Progressing", 1),
            Noisy::PreRollout => ("Progressing", 0),
            Noisy::Confirm => ("WaitingApproval", 0),
        };
        assert_eq!(
            (
                st["phase"].as_str().unwrap(),
                st["currentStep"].as_i64().unwrap()
            ),
            want,
            "{ns}/{name}: {st:#}"
        );
    }
    s
}

/// Run the controller until the healthy Canary is rolled back (Failed, and the apex
/// Service back on the primary); how long after its check was due that happened, in
/// controller time.
async fn rolled_back_after(s: &Scenario, per_namespace: usize) -> Duration {
    let healthy = s.get("canaries", "shop", "podinfo");
    let step_started: DateTime<Utc> =
        serde_json::from_value(healthy["status"]["stepStartedAt"].clone()).unwrap();
    let due = s.instant(step_started) + INTERVAL;
    let opts = RunOptions {
        namespace: None,
        health_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        lease_namespace: "serin-system".into(),
        lease_name: "serin-leader".into(),
        identity: "test".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
        shard: Default::default(),
        reconcile_hook: None,
        reconcile_concurrency: crate::controller::run::DEFAULT_RECONCILE_CONCURRENCY,
        max_reconciles_per_namespace: per_namespace,
    };
    let controller = tokio::spawn(run(s.server.client(), (*s.ctx).clone(), opts));
    let give_up = due + Duration::from_secs(600);
    let took = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let st = &s.get("canaries", "shop", "podinfo")["status"];
        let apex = s.get("services", "shop", "podinfo");
        let on_primary = apex["spec"]["selector"] == json!({"app": "podinfo-primary"});
        if st["phase"] == "Failed" && on_primary {
            break Instant::now().saturating_duration_since(due);
        }
        assert!(
            Instant::now() < give_up,
            "not rolled back 10 minutes after its check was due: {st:#}"
        );
    };
    // Another minute, so every noisy Canary has had its turns at its blackholes.
    tokio::time::sleep(INTERVAL).await;
    controller.abort();
    let st = &s.get("canaries", "shop", "podinfo")["status"];
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("error-rate: 0.2 > max 0.01"),
        "{st:#}"
    );
    took
}

/// The noisy Canaries really were stuck on their blackholes, and never judged on them.
fn assert_noisy_were_blackholed(s: &Scenario) {
    use std::sync::atomic::Ordering::Relaxed;
    let runner = s.ctx.webhooks.as_ref().unwrap();
    println!(
        "blackholes: {} Prometheus connections, {} webhook connections; {} calls still running",
        s.prometheus_hits.load(Relaxed),
        s.hook_hits.load(Relaxed),
        runner.running()
    );
    assert!(
        s.prometheus_hits.load(Relaxed) > 0,
        "their checks asked Prometheus"
    );
    assert!(
        s.hook_hits.load(Relaxed) >= 20,
        "every noisy hook was called"
    );
    assert!(
        runner.running() >= 20,
        "and is still waiting: {}",
        runner.running()
    );
    for (ns, name, kind) in s.canaries.iter().skip(1) {
        let st = &s.get("canaries", ns, name)["status"];
        assert_ne!(st["phase"], "Failed", "{ns}/{name}");
        if *kind == Noisy::Checks {
            assert_eq!(st["currentStep"], 1, "{ns}/{name}: held, not advanced");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn twenty_blackholed_canaries_in_one_namespace_do_not_delay_the_rollback_of_a_healthy_one() {
    let s = scenario(1).await;
    let took = rolled_back_after(&s, 4).await;
    let scrape = s.ctx.metrics.encode();
    let deferred = scrape
        .lines()
        .find_map(|l| l.strip_prefix("serin_reconcile_deferred_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    println!(
        "one noisy namespace: rolled back {took:?} after its check was due; {deferred} noisy reconciles put off"
    );
    assert!(deferred > 0.0, "the namespace limit was reached: {scrape}");
    assert!(
        took <= Duration::from_secs(2),
        "rolled back {took:?} after its check was due"
    );
    assert_noisy_were_blackholed(&s);
}

#[tokio::test(start_paused = true)]
async fn twenty_blackholed_canaries_across_namespaces_delay_a_healthy_rollback_by_one_check_at_most(
) {
    // Twenty namespaces: the per-namespace limit does not bind. The sixteen noisy checks
    // legitimately hold all 16 slots when the healthy check comes due; what bounds its
    // wait is that none of them waits for a webhook and each ends at the check timeout.
    let s = scenario(20).await;
    let took = rolled_back_after(&s, 4).await;
    println!("twenty noisy namespaces: rolled back {took:?} after its check was due");
    assert!(
        took <= CHECK_TIMEOUT + Duration::from_secs(2),
        "rolled back {took:?} after its check was due"
    );
    assert_noisy_were_blackholed(&s);
}
