//! The Graphite provider against a real Graphite (Debian packages graphite-carbon and
//! graphite-web, the latter under gunicorn), started on loopback: points written to
//! carbon's plaintext port, then asked through serin's provider registry. Fails (never
//! skips) without the packages.

use std::time::{Duration, Instant};

use chrono::Utc;
use serin::analysis::{render_query, resolve_metrics, RenderVars};
use serin::crd::{GraphiteProviderSpec, ProviderSpec, TemplateRef};
use serin::providers::{MetricError, MetricSources, ProviderSources};
use tokio::io::AsyncWriteExt as _;

#[allow(dead_code)]
#[path = "../e2e/stores.rs"]
mod stores;

fn spec(address: &str) -> ProviderSpec {
    ProviderSpec {
        graphite: Some(GraphiteProviderSpec {
            address: address.into(),
            lookback: Some("5m".into()),
            timeout: Some("5s".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_answers_of_a_real_graphite_are_read_as_serin_expects() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("serin-graphite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let graphite = stores::Graphite::start(&dir).await;
    let run = async {
        let now = Utc::now().timestamp();
        // Two pods of one Deployment, StatsD-shaped (as the shipped template expects),
        // and a series whose only point is older than the lookback.
        let mut lines = String::new();
        for (ago, a_req, a_err, b_req) in [(60, 10, 1, 10), (30, 20, 4, 20), (10, 10, 5, 30)] {
            let ts = now - ago;
            let p = "stats_counts.shop.podinfo-canary";
            lines.push_str(&format!(
                "{p}.pod-a.http.requests {a_req} {ts}\n{p}.pod-a.http.errors {a_err} {ts}\n\
                 {p}.pod-b.http.requests {b_req} {ts}\n{p}.pod-b.http.errors 0 {ts}\n"
            ));
        }
        lines.push_str(&format!("serin.old.points 7 {}\n", now - 1800));
        let mut carbon = tokio::net::TcpStream::connect(graphite.carbon)
            .await
            .unwrap();
        carbon.write_all(lines.as_bytes()).await.unwrap();
        carbon.shutdown().await.unwrap();

        let sources = ProviderSources::new(None, Duration::from_secs(5));
        let s = sources.source(Some(&spec(&graphite.url)), None).unwrap();
        let pod_a = "stats_counts.shop.podinfo-canary.pod-a.http.requests";
        // Carbon writes the whisper files a moment after it received the points.
        let mut waited = Duration::ZERO;
        while s.query_scalar(pod_a, Utc::now()).await.is_err() {
            assert!(waited < Duration::from_secs(15), "points never readable");
            tokio::time::sleep(Duration::from_millis(200)).await;
            waited += Duration::from_millis(200);
        }
        let at = Utc::now();
        // One target: its last non-null point.
        assert_eq!(s.query_scalar(pod_a, at).await, Ok(10.0));
        assert_eq!(
            s.query_scalar(
                "sumSeries(stats_counts.shop.podinfo-canary.*.http.requests)",
                at
            )
            .await,
            Ok(40.0)
        );
        // Several targets: an error naming one for a scalar, each one's last for a vector.
        let each = "stats_counts.shop.podinfo-canary.*.http.requests";
        assert_eq!(
            s.query_scalar(each, at).await,
            Err(MetricError::MultipleSeries {
                count: 2,
                example: "stats_counts.shop.podinfo-canary.pod-a.http.requests".into()
            })
        );
        assert_eq!(s.query_vector(each, at).await, Ok(vec![10.0, 30.0]));
        // Nothing matched, or only nulls in the lookback: no data, never a value.
        assert_eq!(
            s.query_scalar("stats_counts.shop.nobody.*.http.requests", at)
                .await,
            Err(MetricError::NoData)
        );
        assert_eq!(
            s.query_scalar("serin.old.points", at).await,
            Err(MetricError::NoData)
        );
        // graphite-web's own refusals, by status only.
        let e = s
            .query_scalar("noSuchFunction(serin.old.points)", at)
            .await
            .unwrap_err();
        assert_eq!(e.category(), "bad_query", "{e}");
        let wrong_path = sources
            .source(Some(&spec(&format!("{}/not-graphite", graphite.url))), None)
            .unwrap();
        let e = wrong_path.query_scalar(pod_a, at).await.unwrap_err();
        assert_eq!(
            e,
            MetricError::Unreachable("HTTP 404 Not Found from graphite-web, body not shown".into())
        );

        // The shipped template, rendered for the canary: errors / requests over the
        // lookback, both pods: (1 + 4 + 5) / (10 + 20 + 10 + 10 + 20 + 30).
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("analysis-templates/providers/graphite-error-rate.yaml"),
        )
        .unwrap();
        let (name, template) =
            serin::analysis::history::parse_template(&text, "graphite-error-rate").unwrap();
        let tref = TemplateRef {
            name,
            cluster_scope: false,
            args: Default::default(),
        };
        let metrics = resolve_metrics(&[(tref, template)]).unwrap();
        let vars = RenderVars {
            namespace: "shop".into(),
            target: "podinfo".into(),
            canary: "podinfo-canary".into(),
            primary: "podinfo-primary".into(),
            workload: "podinfo-canary".into(),
            service: "podinfo".into(),
            interval: "1m".into(),
            args: metrics[0].args.clone(),
        };
        let query = render_query(&metrics[0].query, &vars).unwrap();
        let rate = s.query_scalar(&query, at).await.unwrap();
        assert!((rate - 0.1).abs() < 1e-9, "{rate}: {query}");
        // The primary has no series: no data.
        let primary = render_query(
            &metrics[0].query,
            &RenderVars {
                workload: "podinfo-primary".into(),
                ..vars
            },
        )
        .unwrap();
        assert_eq!(s.query_scalar(&primary, at).await, Err(MetricError::NoData));
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the real-Graphite test finishes within 60s");
    drop(graphite);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("real Graphite test took {:?}", started.elapsed());
}
