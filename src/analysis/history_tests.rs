use chrono::TimeZone;

use super::*;
use crate::providers::fake_prometheus::{FakePrometheus, Reply};
use crate::providers::{MetricSource, PrometheusSources};

const T: i64 = 1_800_000_000;

const TEMPLATE: &str = r#"
apiVersion: serin.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: errors-and-latency
spec:
  args:
    - name: maxErrorRate
      default: "0.01"
  metrics:
    - name: err
      query: sum(rate(e{pod=~"{{workload}}-.*"}[{{interval}}]))
      threshold:
        max: "{{args.maxErrorRate}}"
    - name: lat
      query: lat{ns="{{namespace}}", w="{{workload}}"}
      threshold:
        max: 0.5
    - name: dry
      query: dry
      dryRun: true
      threshold:
        max: 1
"#;

fn request(windows: u32) -> AnalyzeRequest {
    let (template_name, template) = parse_template(TEMPLATE, "inline").unwrap();
    AnalyzeRequest {
        template_name,
        template,
        args: BTreeMap::new(),
        vars: RenderVars {
            namespace: "shop".into(),
            target: "podinfo".into(),
            primary: "podinfo-primary".into(),
            canary: "podinfo".into(),
            workload: "podinfo-primary".into(),
            service: "podinfo".into(),
            interval: "ignored".into(),
            args: BTreeMap::new(),
        },
        interval: Duration::from_secs(60),
        end: Utc.timestamp_opt(T, 0).unwrap(),
        windows,
        secrets: BTreeMap::new(),
    }
}

const ERR: &str = r#"sum(rate(e{pod=~"podinfo-primary-.*"}[1m]))"#;
const LAT: &str = r#"lat{ns="shop", w="podinfo-primary"}"#;

fn one(v: &str) -> Reply {
    Reply::vector(T, &[("{}", v)])
}

fn series(points: &[(i64, &str)]) -> Reply {
    let points: Vec<(i64, String)> = points.iter().map(|(t, v)| (*t, v.to_string())).collect();
    Reply::matrix(&[("{}", points)])
}

async fn scripted() -> FakePrometheus {
    let fake = FakePrometheus::start().await;
    // Oldest to newest: pass, fail, no data (NaN), fail.
    fake.on_range(
        ERR,
        series(&[
            (T - 180, "0.001"),
            (T - 120, "0.05"),
            (T - 60, "NaN"),
            (T, "0.02"),
        ]),
    );
    // No sample at T - 120: that window has no data.
    fake.on_range(
        LAT,
        series(&[(T - 180, "0.3"), (T - 60, "0.3"), (T, "0.3")]),
    );
    fake.on_range(
        "dry",
        series(&[(T - 180, "99"), (T - 120, "99"), (T - 60, "99"), (T, "99")]),
    );
    // Single-window runs ask instant queries.
    fake.on_at(ERR, T, one("0.02"));
    fake.on(LAT, one("0.3"));
    fake.on("dry", one("99"));
    fake
}

#[tokio::test]
async fn judges_each_window_and_counts_failures() {
    let fake = scripted().await;
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    let report = analyze(&request(4), &sources).await.unwrap();

    let ends: Vec<i64> = report.windows.iter().map(|w| w.end.timestamp()).collect();
    assert_eq!(ends, vec![T - 180, T - 120, T - 60, T]);
    let outcomes: Vec<MetricVerdict> = report.windows.iter().map(|w| w.outcome).collect();
    use MetricVerdict::*;
    // The failing dry-run metric never decides.
    assert_eq!(outcomes, vec![Pass, Fail, Inconclusive, Fail]);
    assert_eq!(report.failed_fraction, 0.5);
    assert_eq!(report.inconclusive_fraction, 0.25);
    assert_eq!(report.windows[1].metrics[0].value, Some(0.05));
    assert_eq!(report.windows[1].metrics[0].reason, "0.05 > max 0.01");
    assert_eq!(report.windows[2].metrics[0].value, None);

    let err = &report.metrics[0];
    assert_eq!((err.failed, err.inconclusive, err.errors), (2, 1, 0));
    assert_eq!(err.longest_failing_run, 1);
    let dry = &report.metrics[2];
    assert_eq!((dry.failed, dry.longest_failing_run), (4, 4));
    assert_eq!(dry.failed_fraction, 1.0);

    let lat = &report.metrics[1];
    assert_eq!((lat.failed, lat.inconclusive), (0, 1));
    assert_eq!(report.windows[1].metrics[1].verdict, Inconclusive);

    // One range query per metric, evaluated at exactly the window ends.
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.path, "/api/v1/query_range");
        assert_eq!(s.params["start"], (T - 180).to_string());
        assert_eq!(s.params["end"], T.to_string());
        assert_eq!(s.params["step"], "60");
    }
    let queries: Vec<&str> = seen.iter().map(|s| s.params["query"].as_str()).collect();
    assert!(
        queries.contains(&ERR) && queries.contains(&LAT),
        "{queries:?}"
    );
}

#[tokio::test]
async fn args_override_defaults_and_one_window_works() {
    let fake = scripted().await;
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    let mut req = request(1);
    req.args.insert("maxErrorRate".into(), "0.05".into());
    let report = analyze(&req, &sources).await.unwrap();
    assert_eq!(report.windows.len(), 1);
    assert_eq!(report.windows[0].metrics[0].verdict, MetricVerdict::Pass);
    assert_eq!(report.windows[0].metrics[0].value, Some(0.02));
    assert!(fake
        .seen()
        .iter()
        .all(|s| s.path == "/api/v1/query" && s.params["time"] == T.to_string()));
    assert_eq!(report.failed_fraction, 0.0);
}

#[tokio::test]
async fn unreachable_prometheus_gives_error_verdicts_not_a_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sources = PrometheusSources::new(
        Some(format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    );
    let report = analyze(&request(2), &sources).await.unwrap();
    assert!(report
        .windows
        .iter()
        .all(|w| w.outcome == MetricVerdict::Error));
    assert_eq!(report.failed_fraction, 0.0);
    assert_eq!(report.metrics[0].errors, 2);
}

#[tokio::test]
async fn bad_requests_are_refused_before_querying() {
    let sources = PrometheusSources::new(None, Duration::from_secs(1));
    let e = analyze(&request(0), &sources).await.unwrap_err();
    assert_eq!(e.to_string(), "windows is 0; accepted: 1 to 20000");
    let mut req = request(1);
    req.template.args[0].default = None;
    let e = analyze(&req, &sources).await.unwrap_err();
    assert_eq!(e.category(), "template_invalid");
    assert!(
        e.to_string().contains("requires argument \"maxErrorRate\""),
        "{e}"
    );
}

#[test]
fn templates_load_from_files_and_wrong_documents_are_named() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates/istio.yaml");
    let (name, spec) = load_template(&path).unwrap();
    assert_eq!(name, "istio");
    assert_eq!(spec.metrics.len(), 4);

    let e = parse_template(
        &TEMPLATE.replace("kind: AnalysisTemplate", "kind: Canary"),
        "x.yaml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.yaml is not an AnalysisTemplate: kind is \"Canary\"; accepted: AnalysisTemplate, ClusterAnalysisTemplate"
    );
    let e = load_template(Path::new("/nonexistent/t.yaml")).unwrap_err();
    assert_eq!(e.category(), "read");
}

#[tokio::test]
async fn table_and_json_show_values_verdicts_and_the_failed_fraction() {
    let fake = scripted().await;
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    let report = analyze(&request(4), &sources).await.unwrap();
    let table = format_table(&report);
    assert!(
        table.starts_with(
            "template errors-and-latency on shop/podinfo-primary: 4 window(s) of 1m\n"
        ),
        "{table}"
    );
    let last = table
        .lines()
        .find(|l| l.starts_with("2027-01-15T08:00:00Z"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = last
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        cells,
        vec![
            "2027-01-15T08:00:00Z",
            "0.02 Fail",
            "0.3 Pass",
            "99 Fail",
            "Fail"
        ]
    );
    assert!(
        table.contains("would have failed: 2 of 4 windows (50.0%); inconclusive: 25.0%"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("err ") && l.contains("2/4 (50.0%)")),
        "{table}"
    );

    let json: serde_json::Value = serde_json::from_str(&format_json(&report).unwrap()).unwrap();
    assert_eq!(json["failedFraction"], 0.5);
    assert_eq!(json["windows"][3]["outcome"], "Fail");
    assert_eq!(json["windows"][2]["metrics"][0]["verdict"], "Inconclusive");
    assert_eq!(json["metrics"][0]["longestFailingRun"], 1);
}

#[tokio::test]
async fn long_histories_are_split_under_the_points_limit() {
    let fake = FakePrometheus::start().await;
    fake.on_range(ERR, Reply::matrix(&[]));
    fake.on(ERR, Reply::vector(T, &[]));
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    let mut req = request(10_001);
    req.template.metrics.truncate(1);
    let report = analyze(&req, &sources).await.unwrap();
    assert_eq!(report.windows.len(), 10_001);
    // No data anywhere: every window inconclusive, none failed.
    assert_eq!(report.inconclusive_fraction, 1.0);
    let seen = fake.seen();
    assert_eq!(
        seen.len(),
        2,
        "one range query of 10,000 points, then one instant query"
    );
    assert_eq!(seen[0].path, "/api/v1/query_range");
    assert_eq!(seen[0].params["start"], (T - 10_000 * 60).to_string());
    assert_eq!(seen[0].params["end"], (T - 60).to_string());
    assert_eq!(seen[1].path, "/api/v1/query");
    assert_eq!(seen[1].params["time"], T.to_string());
}

/// History has one workload, so a template's comparative metrics (the built-in
/// `errors` and `latency`) are named as not evaluated and only its thresholds (the
/// guards) are judged; a template of comparative metrics only is refused.
#[tokio::test]
async fn comparative_metrics_are_left_out_and_named() {
    let fake = scripted().await;
    let sources = PrometheusSources::new(Some(fake.address.clone()), Duration::from_secs(2));
    let mut req = request(1);
    let mut seq = req.template.metrics[1].clone();
    seq.name = "errors".into();
    seq.sequential = Some(crate::crd::SequentialSpec {
        requests_query: Some("requests".into()),
        ..Default::default()
    });
    req.template.metrics.push(seq);
    let report = analyze(&req, &sources).await.unwrap();
    let names: Vec<&str> = report.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["err", "lat", "dry"]);
    assert_eq!(report.comparative, ["errors"]);
    assert!(format_table(&report)
        .ends_with("not evaluated (canary against primary, during a release only): errors\n"));

    req.template = crate::analysis::builtin_template(crate::analysis::Telemetry::Istio);
    req.template.metrics.truncate(2);
    let e = analyze(&req, &sources).await.unwrap_err();
    assert!(
        e.to_string().contains(
            "has no threshold metrics to evaluate over history; its compare/sequential metrics (errors, latency)"
        ),
        "{e}"
    );
}

/// A provider without range queries (as InfluxDB and Graphite): records each instant
/// asked, answers 0.05 for windows ending on an even minute, else 0.
#[derive(Default)]
struct InstantOnly {
    asked: std::sync::Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl MetricSource for InstantOnly {
    async fn query_scalar(&self, _query: &str, at: DateTime<Utc>) -> Result<f64, MetricError> {
        self.asked.lock().unwrap().push(at.timestamp());
        Ok(if at.timestamp() % 120 == 0 { 0.05 } else { 0.0 })
    }
    async fn query_vector(&self, _: &str, _: DateTime<Utc>) -> Result<Vec<f64>, MetricError> {
        Err(MetricError::NoData)
    }
}

struct OneSource(std::sync::Arc<InstantOnly>);

impl MetricSources for OneSource {
    fn source(
        &self,
        _: Option<&crate::crd::ProviderSpec>,
        _: Option<&crate::providers::ProviderCredentials>,
    ) -> Result<std::sync::Arc<dyn MetricSource>, MetricError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn a_provider_without_range_queries_is_asked_window_by_window() {
    let src = std::sync::Arc::new(InstantOnly::default());
    let mut req = request(4);
    req.template.metrics.truncate(1);
    let report = analyze(&req, &OneSource(src.clone())).await.unwrap();
    let mut asked = src.asked.lock().unwrap().clone();
    asked.sort_unstable();
    assert_eq!(asked, vec![T - 180, T - 120, T - 60, T]);
    let values: Vec<Option<f64>> = report.windows.iter().map(|w| w.metrics[0].value).collect();
    // T is an even minute: T and T-120 fail the 0.01 threshold.
    assert_eq!(values, vec![Some(0.0), Some(0.05), Some(0.0), Some(0.05)]);
    assert_eq!(report.failed_fraction, 0.5);
}

const DATADOG_TEMPLATE: &str = r#"
apiVersion: serin.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: datadog-errors
spec:
  provider:
    datadog:
      address: ADDRESS
      secretRef:
        name: dd
  metrics:
    - name: err
      query: sum:errors{service:{{target}}}
      threshold:
        max: 0.01
"#;

#[tokio::test]
async fn a_datadog_template_is_analyzed_with_the_keys_of_its_secret() {
    let fake = FakePrometheus::start().await;
    fake.otherwise(Reply::json(
        200,
        r#"{"status":"ok","series":[{"expression":"q","pointlist":[[1800000000000,0.002]]}]}"#,
    ));
    let (template_name, template) = parse_template(
        &DATADOG_TEMPLATE.replace("ADDRESS", &fake.address),
        "inline",
    )
    .unwrap();
    let mut req = request(1);
    req.template_name = template_name;
    req.template = template;
    assert_eq!(
        secrets_named(&req).unwrap().into_iter().collect::<Vec<_>>(),
        vec!["dd".to_string()]
    );
    let sources = PrometheusSources::new(None, Duration::from_secs(2));

    // Without the Secret nothing is asked, and the error says how to give it.
    let err = analyze(&req, &sources).await.unwrap_err().to_string();
    assert!(
        err.contains(r#"needs the Secret "dd""#) && err.contains("--secret-file"),
        "{err}"
    );
    assert!(fake.seen().is_empty());

    let (name, data) = crate::analysis::secret_file::parse_secret(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: dd}\nstringData:\n  api-key: k1\n  application-key: k2\n",
        "dd.yaml",
    )
    .unwrap();
    req.secrets.insert(name, data);
    let report = analyze(&req, &sources).await.unwrap();
    assert_eq!(report.windows[0].metrics[0].value, Some(0.002));
    assert_eq!(report.windows[0].outcome, MetricVerdict::Pass);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/v1/query");
    assert_eq!(seen[0].params["query"], "sum:errors{service:podinfo}");
    assert_eq!(seen[0].headers["dd-api-key"], "k1");
    assert_eq!(seen[0].headers["dd-application-key"], "k2");
}
