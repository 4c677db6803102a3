use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use super::render::*;
use super::{frame, status_value, Output, Target};
use crate::crd::Canary;

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

pub(super) fn ts(secs: i64) -> String {
    at(secs).to_rfc3339()
}

/// A Canary from JSON, as the API server returns it.
pub(super) fn canary(ns: &str, name: &str, status: serde_json::Value) -> Canary {
    let mut v = json!({
        "apiVersion": "serin.dev/v1alpha1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": ts(-3 * 86400)},
        "spec": {"targetRef": {"name": name}},
    });
    if !status.is_null() {
        v["status"] = status;
    }
    serde_json::from_value(v).unwrap()
}

fn metric(name: &str, verdict: &str, reason: &str) -> serde_json::Value {
    json!({"name": name, "verdict": verdict, "reason": reason, "checkedAt": ts(60),
           "value": 0.0123, "baseline": 0.01, "effect": 0.0023, "pValue": 0.04})
}

/// Release of r2 at step 2/3 (25%), step entered at t=60, last check t=60.
pub(super) fn progressing() -> Canary {
    canary(
        "shop",
        "podinfo",
        json!({
            "phase": "Progressing", "canaryWeight": 25, "currentStep": 2, "stepLabel": "2/3",
            "stableRevision": "r1", "canaryRevision": "r2", "failedChecks": 1,
            "releaseStartedAt": ts(0), "stepStartedAt": ts(60), "lastAnalysisAt": ts(60),
            "lastTransitionTime": ts(0),
            "message": "check failed (1/2), holding at step 2: errors: 1.2% > max 1%",
            "metrics": [metric("errors", "Fail", "1.2% > max 1%"), metric("latency", "Pass", "p99 120ms ≤ 250ms")],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "PrimaryReady", "lastTransitionTime": ts(0)},
                {"type": "Progressing", "status": "True", "reason": "Progressing", "lastTransitionTime": ts(0)},
                {"type": "AnalysisHealthy", "status": "False", "reason": "NoData", "message": "latency: no samples", "lastTransitionTime": ts(60)},
                {"type": "WaitingApproval", "status": "False", "reason": "NoGate", "lastTransitionTime": ts(0)},
            ],
        }),
    )
}

/// The display column at which `needle` starts in `line`.
fn column(line: &str, needle: &str) -> usize {
    let i = line
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} in {line:?}"));
    width(&line[..i])
}

#[test]
fn weight_bar_is_never_empty_with_traffic_nor_full_without_all_of_it() {
    let cells = |b: &str| {
        (
            b.chars().filter(|c| *c == '█').count(),
            b.chars().filter(|c| *c == '░').count(),
        )
    };
    for (w, filled, label) in [
        (0, 0, "0%"),
        (1, 1, "1%"),
        (40, 8, "40%"),
        (50, 10, "50%"),
        (99, 19, "99%"),
        (100, 20, "100%"),
        (150, 20, "100%"),
        (-5, 0, "0%"),
    ] {
        let b = weight_bar(w);
        assert_eq!(cells(&b), (filled, BAR_CELLS - filled), "{w}: {b}");
        assert!(b.ends_with(&format!("] {label}")), "{w}: {b}");
        assert_eq!(width(&b), BAR_CELLS + 3 + label.len(), "{b}");
    }
    assert_eq!(weight_bar(40), "[████████░░░░░░░░░░░░] 40%");
}

#[test]
fn status_shows_phase_revisions_step_bar_clocks_and_verdicts() {
    let out = render_status(&progressing(), at(90));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Canary:     shop/podinfo");
    assert_eq!(lines[1], "Phase:      Progressing for 90s");
    assert_eq!(lines[2], "Revision:   r2 (primary serves r1)");
    assert_eq!(lines[3], format!("Step:       2/3  {}", weight_bar(25)));
    // Interval 1m from the last check at t=60; deadline 10m from the step start.
    assert_eq!(
        lines[4],
        "In step:    30s; next check in 30s; deadline in 9m30s"
    );
    assert!(
        out.contains("Checks:     failed 1/2, inconclusive 0\n"),
        "{out}"
    );
    assert!(out.contains("Message:    check failed (1/2)"), "{out}");
    // A step held for several checks shows how many have passed.
    let mut held = progressing();
    held.spec.analysis.checks_per_step = 5;
    held.status.as_mut().unwrap().step_checks = 2;
    let out_held = render_status(&held, at(90));
    assert!(
        out_held.contains("In step:    30s; 2/5 passing checks; next check in 30s;"),
        "{out_held}"
    );
    // Only the troubled condition; WaitingApproval=False is the normal state.
    assert!(out.contains("AnalysisHealthy   False    NoData"), "{out}");
    assert!(!out.contains("NoGate"), "{out}");
    assert!(!out.contains("PrimaryReady"), "{out}");
    assert!(out.contains("Verdicts:   (last check 30s ago)"), "{out}");
    let header = lines.iter().find(|l| l.contains("METRIC")).unwrap();
    let errors = lines.iter().find(|l| l.starts_with("  errors ")).unwrap();
    assert_eq!(
        errors.split_whitespace().collect::<Vec<_>>()[..6],
        ["errors", "Fail", "0.0123", "0.01", "0.0023", "0.04"]
    );
    for col in [
        "VERDICT", "VALUE", "BASELINE", "EFFECT", "P-VALUE", "REASON",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert_eq!(column(header, "REASON"), column(errors, "1.2% > max 1%"));
    // The check is overdue later on.
    let late = render_status(&progressing(), at(200));
    assert!(late.contains("; check due;"), "{late}");
}

#[test]
fn verdict_table_aligns_wide_characters_and_cuts_long_reasons() {
    let long = format!("line one\nline two {}", "x".repeat(200));
    let mut c = progressing();
    let s = c.status.as_mut().unwrap();
    s.metrics = vec![
        serde_json::from_value(metric("延迟-p99", "Pass", "快")).unwrap(),
        serde_json::from_value(metric("e", "Inconclusive", &long)).unwrap(),
    ];
    s.metrics[1].dry_run = true;
    s.metrics[1].value = None;
    let out = render_status(&c, at(90));
    let lines: Vec<&str> = out.lines().collect();
    let header = lines.iter().find(|l| l.contains("METRIC")).unwrap();
    let wide = lines.iter().find(|l| l.contains("延迟-p99")).unwrap();
    let narrow = lines.iter().find(|l| l.contains("Inconclusive")).unwrap();
    // Columns start at the same display column in every row.
    assert_eq!(column(header, "VERDICT"), column(wide, "Pass"));
    assert_eq!(
        column(header, "VERDICT"),
        column(narrow, "Inconclusive (dry-run)")
    );
    assert_eq!(column(header, "REASON"), column(wide, "快"));
    assert_eq!(
        column(header, "REASON"),
        column(narrow, "line one line two")
    );
    // Missing values show as "-"; the long reason is one line, cut with "…".
    assert_eq!(narrow.split_whitespace().nth(3), Some("-"));
    let reason = &narrow[narrow.find("line one").unwrap()..];
    assert!(reason.ends_with('…'), "{reason}");
    assert_eq!(width(reason), REASON_WIDTH);
}

/// The table cuts reasons; the sequential evidence is printed in full below it, with
/// the last look's increments.
#[test]
fn sequential_evidence_is_spelled_out_in_numbers() {
    let mut c = progressing();
    let s = c.status.as_mut().unwrap();
    s.phase = crate::crd::CanaryPhase::Failed;
    let mut m: crate::crd::MetricStatus =
        serde_json::from_value(metric("errors", "Fail", "cut")).unwrap();
    m.sequential = Some(serde_json::from_value(json!({
        "looks": 7, "skipped": 0,
        "canaryErrors": 12.0, "canaryRequests": 230.0,
        "baselineErrors": 3.0, "baselineRequests": 2100.0,
        "alternatives": [], "logLr": [], "pValue": 0.0047,
        "rejected": true, "eValue": 214.3, "threshold": 100.0,
        "lastLook": {"canaryErrors": 3.0, "canaryRequests": 40.0, "baselineErrors": 1.0, "baselineRequests": 400.0},
    }))
    .unwrap());
    s.metrics = vec![
        m,
        serde_json::from_value(metric("latency", "Pass", "ok")).unwrap(),
    ];
    let out = render_status(&c, at(90));
    let evidence = &out[out.find("Evidence:").expect(&out)..];
    let lines: Vec<&str> = evidence.lines().collect();
    assert_eq!(
        lines[1],
        "  errors: canary 12/230 errors (5.22%) vs primary 3/2100 errors (0.14%), evidence 214.3 >= 100"
    );
    assert_eq!(
        lines[2],
        "          last look: canary +3/40, primary +1/400 (7 looks)"
    );
    // Only sequential metrics have evidence.
    assert!(!evidence.contains("latency"), "{evidence}");
    // Without any, no section.
    let plain = render_status(&progressing(), at(90));
    assert!(!plain.contains("Evidence:"), "{plain}");
}

#[test]
fn truncate_counts_display_columns() {
    assert_eq!(truncate("short", 10), "short");
    assert_eq!(truncate("a\n  b", 10), "a b");
    assert_eq!(truncate("abcdefghij", 5), "abcd…");
    // Wide characters take two columns: never cut past the limit.
    let cut = truncate("漢字漢字漢字", 6);
    assert_eq!(cut, "漢字…");
    assert!(width(&cut) <= 6);
}

#[test]
fn empty_and_partial_status_render_without_panicking() {
    let none = canary("shop", "podinfo", serde_json::Value::Null);
    let out = render_status(&none, at(0));
    assert!(out.contains("Phase:      Unknown (no status yet"), "{out}");
    let partial = canary("shop", "podinfo", json!({"phase": "Progressing"}));
    let out = render_status(&partial, at(0));
    assert!(out.contains("Phase:      Progressing\n"), "{out}");
    assert!(out.contains("Step:       0/3  [░░░░"), "{out}");
    assert!(out.contains("Verdicts:   none yet"), "{out}");
    let empty_obj = canary("shop", "podinfo", json!({}));
    assert!(render_status(&empty_obj, at(0)).contains("Initializing"));
    assert_eq!(
        render_history(&empty_obj, at(0)),
        "No releases of shop/podinfo yet.\n"
    );
    let mut nons = canary("x", "y", json!({}));
    nons.metadata.namespace = None;
    nons.metadata.creation_timestamp = None;
    assert!(render_list(&[nons], true, at(0)).contains("y"));
    // An invalid spec (no clocks can be computed) still renders.
    let mut bad = progressing();
    bad.spec.analysis.interval = "soon".into();
    let out = render_status(&bad, at(90));
    assert!(out.contains("In step:    30s\n"), "{out}");
}

#[test]
fn gate_pause_rollback_and_stalled_progress_are_spelled_out() {
    let waiting = canary(
        "shop",
        "podinfo",
        json!({"phase": "WaitingApproval", "canaryRevision": "r2", "stableRevision": "r1",
               "currentStep": 3, "canaryWeight": 50, "pendingGate": "beforePromotion",
               "stepStartedAt": ts(0)}),
    );
    let out = render_status(&waiting, at(120));
    assert!(out.contains("Waiting:    beforePromotion approval for revision r2 at step 3 (kubectl serin approve podinfo)"), "{out}");
    assert!(
        !out.contains("deadline"),
        "no deadline while waiting for a human: {out}"
    );

    let paused = canary(
        "shop",
        "podinfo",
        json!({"phase": "Progressing", "canaryRevision": "r2", "currentStep": 1,
               "stepStartedAt": ts(0), "pausedAt": ts(30)}),
    );
    let out = render_status(&paused, at(90));
    assert!(out.contains("Phase:      Progressing, paused"), "{out}");
    assert!(
        out.contains("In step:    90s; paused 60s ago (spec.suspend)\n"),
        "{out}"
    );

    let stalled = canary(
        "shop",
        "podinfo",
        json!({"phase": "Promoting", "canaryRevision": "r2", "stableRevision": "r1",
               "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": "waiting for the primary", "lastTransitionTime": ts(0)}]}),
    );
    assert!(render_status(&stalled, at(60)).contains("ProgressDeadlineExceeded"));

    let failed = canary(
        "shop",
        "podinfo",
        json!({"phase": "Failed", "canaryRevision": "r2", "stableRevision": "r1", "failedRevision": "r2",
               "conditions": [{"type": "Progressing", "status": "False", "reason": "Failed", "lastTransitionTime": ts(0)}]}),
    );
    let out = render_status(&failed, at(60));
    assert!(
        out.contains("Revision:   r1\n"),
        "idle: the primary's revision: {out}"
    );
    assert!(
        out.contains("Rolled back: r2 (`kubectl serin retry podinfo`"),
        "{out}"
    );
    assert!(
        !out.contains("Conditions:"),
        "Progressing=False is normal when idle: {out}"
    );
}

#[test]
fn list_is_a_sorted_aligned_table_with_namespaces_on_request() {
    let mut other = canary(
        "web",
        "api",
        json!({"phase": "Succeeded", "canaryWeight": 0, "stepLabel": "0/3",
               "stableRevision": "r9", "canaryRevision": "r9", "message": "revision r9 promoted"}),
    );
    other.metadata.creation_timestamp = serde_json::from_value(json!(ts(-150))).unwrap();
    let nostatus = canary("shop", "cart", serde_json::Value::Null);
    let list = [progressing(), other, nostatus];
    let out = render_list(&list, false, at(90));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PHASE", "WEIGHT", "STEP", "REVISION", "AGE", "MESSAGE"]
    );
    // Sorted by namespace, then name.
    assert!(lines[1].starts_with("cart "), "{out}");
    assert!(lines[2].starts_with("podinfo "), "{out}");
    assert!(lines[3].starts_with("api "), "{out}");
    // No controller wrote a status in the 3 days since it was created.
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["cart", "Unknown", "(stalled", "3d)", "0%", "-", "-", "3d"]
    );
    assert_eq!(
        lines[2].split_whitespace().take(6).collect::<Vec<_>>(),
        ["podinfo", "Progressing", "25%", "2/3", "r2", "3d"]
    );
    assert_eq!(
        lines[3].split_whitespace().take(6).collect::<Vec<_>>(),
        ["api", "Succeeded", "0%", "0/3", "r9", "4m"]
    );
    for l in &lines[1..] {
        assert_eq!(
            column(l, "%"),
            column(lines[0], "WEIGHT")
                + width(l.split_whitespace().find(|w| w.ends_with('%')).unwrap())
                - 1
        );
    }
    assert_eq!(
        column(lines[2], "check failed"),
        column(lines[0], "MESSAGE")
    );
    let all = render_list(&list, true, at(90));
    let first = all.lines().nth(1).unwrap();
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(first.starts_with("shop "), "{all}");
    assert!(all.lines().nth(3).unwrap().starts_with("web "), "{all}");
}

#[test]
fn history_lists_the_release_in_flight_then_ended_ones_newest_first() {
    let mut c = progressing();
    c.status.as_mut().unwrap().history = serde_json::from_value(json!([
        {"revision": "r0", "startedAt": ts(-7200), "finishedAt": ts(-6900), "result": "promoted",
         "reason": "all 3 steps passed", "step": 3, "steps": 3, "weight": 100},
        {"revision": "r1", "startedAt": ts(-3600), "finishedAt": ts(-3000), "result": "rolledBack",
         "reason": "failed checks 2/2: errors: 5% > max 1%", "step": 2, "steps": 3, "weight": 25},
        {"revision": "r1b", "finishedAt": ts(-60), "result": "aborted", "reason": "aborted by bob via cli"},
    ]))
    .unwrap();
    let out = render_history(&c, at(90));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REVISION", "RESULT", "STARTED", "DURATION", "AGE", "STEP", "WEIGHT", "REASON"]
    );
    let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(words(lines[1])[..2], ["r2", "(Progressing)"]);
    assert_eq!(words(lines[2])[..2], ["r1b", "aborted"]);
    assert_eq!(words(lines[3])[..2], ["r1", "rolledBack"]);
    assert_eq!(words(lines[4])[..2], ["r0", "promoted"]);
    // r1: started 2026… ran 10m, ended 51m30s ago (shown as 51m), at step 2/3 with 25%.
    assert!(
        lines[3].contains(&at(-3600).format("%Y-%m-%d %H:%M:%SZ").to_string()),
        "{out}"
    );
    assert_eq!(words(lines[3])[4..8], ["10m", "51m", "2/3", "25%"]);
    assert_eq!(
        column(lines[3], "failed checks"),
        column(lines[0], "REASON")
    );
    // A record without a start time has no duration.
    assert_eq!(words(lines[2])[2..4], ["-", "-"]);
    // Idle: only the ended releases.
    c.status.as_mut().unwrap().phase = crate::crd::CanaryPhase::Failed;
    assert_eq!(render_history(&c, at(90)).lines().count(), 4);
}

#[test]
fn durations_and_numbers_are_short() {
    for (secs, s) in [
        (-5, "0s"),
        (45, "45s"),
        (119, "119s"),
        (200, "3m20s"),
        (240, "4m"),
        (1500, "25m"),
        (5 * 3600 + 600, "5h10m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400, "12d"),
    ] {
        assert_eq!(human_duration(Duration::seconds(secs)), s, "{secs}");
    }
    for (v, s) in [
        (0.0, "0"),
        (0.0123, "0.0123"),
        (250.0, "250"),
        (-1.5, "-1.5"),
        (0.000015, "1.5e-5"),
        (3_200_000.0, "3.2e6"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
    ] {
        assert_eq!(number(v), s, "{v}");
    }
}

#[test]
fn machine_output_is_the_status() {
    let one = Target::One {
        namespace: "shop".into(),
        name: "podinfo".into(),
    };
    let c = progressing();
    let v: serde_json::Value =
        serde_json::from_str(&frame(&one, std::slice::from_ref(&c), Output::Json, at(0)).unwrap())
            .unwrap();
    assert_eq!(v["phase"], "Progressing");
    assert_eq!(v["canaryWeight"], 25);
    let list = Target::List { namespace: None };
    let y: serde_json::Value =
        serde_yaml::from_str(&frame(&list, std::slice::from_ref(&c), Output::Yaml, at(0)).unwrap())
            .unwrap();
    assert_eq!(y[0]["namespace"], "shop");
    assert_eq!(y[0]["status"]["canaryRevision"], "r2");
    assert_eq!(status_value(&one, &[], at(0)), serde_json::Value::Null);
    assert_eq!(
        frame(&list, &[], Output::Text, at(0)).unwrap(),
        "No canaries found.\n"
    );
}

#[test]
fn watch_frames_redraw_in_place_on_a_terminal_and_append_otherwise() {
    use super::{Drawer, WatchOptions, CLEAR};
    use std::collections::BTreeMap;
    let one = Target::One {
        namespace: "shop".into(),
        name: "podinfo".into(),
    };
    let mut store = BTreeMap::new();
    store.insert(("shop".to_string(), "podinfo".to_string()), progressing());
    let opts = |output, redraw| WatchOptions {
        output,
        redraw,
        tick: std::time::Duration::from_secs(5),
    };
    let draw3 = |o: &WatchOptions| {
        let mut d = Drawer {
            target: &one,
            opts: o,
            last: None,
        };
        let mut out = Vec::new();
        let mut s = store.clone();
        d.draw(&s, &mut out, at(90)).unwrap();
        // Unchanged: nothing is written.
        d.draw(&s, &mut out, at(90)).unwrap();
        let c = s.values_mut().next().unwrap();
        c.status.as_mut().unwrap().phase = crate::crd::CanaryPhase::Succeeded;
        d.draw(&s, &mut out, at(90)).unwrap();
        String::from_utf8(out).unwrap()
    };
    let tty = draw3(&opts(Output::Text, true));
    assert_eq!(tty.matches(CLEAR).count(), 2, "{tty:?}");
    assert!(tty.starts_with(CLEAR));
    assert!(tty
        .split(CLEAR)
        .nth(2)
        .unwrap()
        .contains("Phase:      Succeeded"));
    let piped = draw3(&opts(Output::Text, false));
    assert!(!piped.contains('\x1b'), "{piped:?}");
    assert_eq!(piped.matches("Canary:     shop/podinfo").count(), 2);
    assert!(
        piped.contains("\n\nCanary:     shop/podinfo"),
        "frames apart: {piped}"
    );
    let json = draw3(&opts(Output::Json, true));
    let docs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        docs.len(),
        2,
        "one line per change, no escape codes: {json:?}"
    );
    assert_eq!(docs[1]["phase"], "Succeeded");
    let yaml = draw3(&opts(Output::Yaml, false));
    assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
}

#[test]
fn a_closed_reader_is_told_apart_from_other_output_errors() {
    struct Closed;
    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let e = super::write_output(&mut Closed, "NAME PHASE\n").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    let gone = super::CliError::Io(e);
    assert!(gone.reader_gone());
    assert!(
        super::quiet_if_reader_gone(gone).is_ok(),
        "a watch ends quietly"
    );
    let full = super::CliError::Io(std::io::ErrorKind::StorageFull.into());
    assert!(!full.reader_gone());
    assert!(super::quiet_if_reader_gone(full).is_err());
    // Nothing to write writes nothing, even to a closed reader.
    assert!(super::write_output(&mut Closed, "").is_ok());
    let mut out = Vec::new();
    super::write_output(&mut out, "one line").unwrap();
    assert_eq!(out, b"one line\n");
}
