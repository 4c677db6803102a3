//! Message bodies, pure: Slack Block Kit, Teams Adaptive Card, generic JSON.

use serde_json::{json, Value};

use super::mrkdwn::{code, escape};
use super::NotifyEvent;
use crate::crd::{MetricStatus, Severity};
use crate::gates::approval_blocks;

/// Slack caps a section's text at 3000 characters and a header at 150.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn fmt_num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// `error-rate: 1.2000 (baseline 0.5000) Fail — reason`
pub fn metric_line(m: &MetricStatus) -> String {
    let value = m.value.map_or_else(|| "no data".to_string(), fmt_num);
    let baseline = m
        .baseline
        .map(|b| format!(" (baseline {})", fmt_num(b)))
        .unwrap_or_default();
    let dry = if m.dry_run { " [dry-run]" } else { "" };
    format!(
        "{}: {value}{baseline} {}{dry} — {}",
        m.name,
        m.verdict.as_str(),
        m.reason
    )
}

fn title(e: &NotifyEvent) -> String {
    let icon = match e.severity {
        Severity::Info => "",
        Severity::Warning => "⚠️ ",
        Severity::Error => "🔴 ",
    };
    format!("{icon}{}/{}: {}", e.namespace, e.name, e.reason)
}

fn revisions(e: &NotifyEvent) -> String {
    format!(
        "{} → {}",
        e.from_revision.as_deref().unwrap_or("-"),
        e.to_revision.as_deref().unwrap_or("-")
    )
}

/// Slack incoming-webhook body: Block Kit with the facts, every metric, the rollback
/// reason, and Approve/Reject buttons while a gate waits.
///
/// Every text that comes from a tenant (names, revisions, messages, metric names and
/// reasons, who decided) is escaped for mrkdwn ([`escape`]) wherever Slack parses
/// mrkdwn: the section texts and fields, the context line, and the top-level `text`
/// (the notification fallback, also parsed). The header is `plain_text`, which Slack
/// never parses for links or mentions.
pub fn slack_message(e: &NotifyEvent, channel: Option<&str>) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title(e), 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&escape(&e.message), 3000)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Target*\n{}", code(&e.target))},
            {"type": "mrkdwn", "text": format!("*Revision*\n{}", escape(&revisions(e)))},
            {"type": "mrkdwn", "text": format!("*Step*\n{}/{}", e.step, e.step_count)},
            {"type": "mrkdwn", "text": format!("*Weight*\n{}%", e.weight)},
            {"type": "mrkdwn", "text": format!("*Phase*\n{}", e.phase.as_str())},
        ]}),
    ];
    if let Some(why) = &e.rollback_reason {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&format!("*Rollback reason*\n{}", escape(why)), 3000)}}));
    }
    if !e.metrics.is_empty() {
        let lines: Vec<String> = e
            .metrics
            .iter()
            .map(|m| format!("• {}", escape(&metric_line(m))))
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&format!("*Metrics*\n{}", lines.join("\n")), 3000)}}));
    }
    if let Some(gate) = &e.pending {
        blocks.push(approval_blocks(&e.namespace, &e.name, gate));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("serin · {} · {}", e.severity.as_str(), e.at.to_rfc3339())}]}));
    let mut msg = json!({
        // Shown in notifications and by clients without Block Kit; parsed as mrkdwn.
        "text": clip(&escape(&format!("{}: {}", title(e), e.message)), 3000),
        "blocks": blocks,
    });
    if let Some(ch) = channel {
        msg["channel"] = json!(ch);
    }
    msg
}

/// Teams incoming-webhook (or Workflows) body: one Adaptive Card. Teams webhooks cannot
/// call back, so a waiting gate shows the command that approves it.
pub fn teams_card(e: &NotifyEvent) -> Value {
    let color = match e.severity {
        Severity::Info => "Good",
        Severity::Warning => "Warning",
        Severity::Error => "Attention",
    };
    let facts = vec![
        json!({"title": "Target", "value": e.target}),
        json!({"title": "Revision", "value": revisions(e)}),
        json!({"title": "Step", "value": format!("{}/{}", e.step, e.step_count)}),
        json!({"title": "Weight", "value": format!("{}%", e.weight)}),
        json!({"title": "Phase", "value": e.phase.as_str()}),
    ];
    let mut body = vec![
        json!({"type": "TextBlock", "text": title(e), "weight": "Bolder", "size": "Medium",
               "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": e.message, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(why) = &e.rollback_reason {
        body.push(
            json!({"type": "TextBlock", "text": format!("Rollback reason: {why}"),
                         "wrap": true, "color": "Attention"}),
        );
    }
    if !e.metrics.is_empty() {
        body.push(json!({"type": "TextBlock", "text": "Metrics", "weight": "Bolder"}));
        let facts: Vec<Value> = e
            .metrics
            .iter()
            .map(|m| {
                let line = metric_line(m);
                let value = line
                    .split_once(": ")
                    .map_or(line.clone(), |(_, rest)| rest.to_string());
                json!({"title": m.name, "value": value})
            })
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    if let Some(g) = &e.pending {
        body.push(json!({"type": "TextBlock", "wrap": true, "text": format!(
            "Waiting for approval ({}). Approve with `kubectl serin approve {} -n {}` or reject with `kubectl serin reject {} -n {}`.",
            g.gate.as_str(), e.name, e.namespace, e.name, e.namespace)}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

/// The generic webhook body: the event as JSON.
pub fn generic_json(e: &NotifyEvent) -> Value {
    serde_json::to_value(e).unwrap_or_else(|_| json!({"message": e.message}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::queue::tests::event;
    use crate::rollout::NoteType;

    #[test]
    fn rollback_message_says_why_and_has_no_buttons() {
        let mut e = event("RolledBack", NoteType::Warning, 2);
        e.message = "revision rev2 rolled back: failed checks 2/2: latency-p99: 812 > 500".into();
        let e = NotifyEvent {
            rollback_reason: Some("failed checks 2/2: latency-p99: 812 > 500".into()),
            ..e
        };
        let m = slack_message(&e, None);
        let text = m["blocks"].to_string();
        assert!(
            text.contains("*Rollback reason*\\nfailed checks 2/2"),
            "{text}"
        );
        assert!(m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["type"] != "actions"));
        assert!(m.get("channel").is_none());
        assert!(m["text"].as_str().unwrap().contains("🔴"));
        let card = teams_card(&e);
        let body = &card["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["color"], "Attention");
        assert!(body
            .to_string()
            .contains("Rollback reason: failed checks 2/2"));
    }

    #[test]
    fn teams_card_lists_facts_and_metrics() {
        let e = event("WaitingApproval", NoteType::Normal, 1);
        let card = teams_card(&e);
        let content = &card["attachments"][0]["content"];
        assert_eq!(content["version"], "1.4");
        let facts = &content["body"][2]["facts"];
        assert_eq!(facts[0], json!({"title": "Target", "value": "podinfo"}));
        assert_eq!(facts[1]["value"], "rev1 → rev2");
        assert_eq!(facts[3]["value"], "25%");
        let metric_facts = &content["body"][4]["facts"];
        assert_eq!(metric_facts[1]["title"], "latency-p99");
        assert!(metric_facts[1]["value"]
            .as_str()
            .unwrap()
            .starts_with("812 Fail"));
        assert!(content["body"]
            .to_string()
            .contains("kubectl serin approve podinfo -n shop"));
    }

    /// Every string Slack parses as mrkdwn in a message.
    fn mrkdwn_texts(v: &Value, parsed: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let is_mrkdwn = m.get("type").and_then(Value::as_str) == Some("mrkdwn");
                for (k, x) in m {
                    mrkdwn_texts(x, k == "text" && (is_mrkdwn || parsed), out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| mrkdwn_texts(x, false, out)),
            Value::String(s) if parsed => out.push(s.clone()),
            _ => {}
        }
    }

    #[test]
    fn slack_mrkdwn_injection_is_escaped() {
        let evil = "<!channel> see <http://evil.example|the dashboard> & <@U0ADMIN>";
        let mut e = event("WaitingApproval", NoteType::Normal, 1);
        e.message = format!("revision rev2: {evil}");
        e.target = format!("podinfo{evil}");
        e.to_revision = Some(format!("rev2{evil}"));
        e.rollback_reason = Some(evil.into());
        e.metrics[0].name = format!("errors{evil}");
        e.metrics[0].reason = evil.into();
        e.pending.as_mut().unwrap().revision = format!("rev2{evil}");
        let m = slack_message(&e, None);
        let mut texts = vec![];
        mrkdwn_texts(&m, false, &mut texts);
        // The top-level fallback text plus every mrkdwn text object.
        assert!(texts.len() >= 9, "{texts:?}");
        for t in &texts {
            assert!(!t.contains('<') && !t.contains('>'), "unescaped: {t}");
        }
        let all = texts.join("\n");
        assert!(all.contains("&lt;!channel&gt;"), "{all}");
        assert!(
            all.contains("&lt;http://evil.example|the dashboard&gt;"),
            "{all}"
        );
        assert!(all.contains("&amp; &lt;@U0ADMIN&gt;"), "{all}");
        // The Reject confirmation names the revision; it is mrkdwn too.
        let actions = m["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        let confirm = actions["elements"][1]["confirm"]["text"]["text"]
            .as_str()
            .unwrap();
        assert!(!confirm.contains('<'), "{confirm}");
    }

    #[test]
    fn header_is_clipped_to_slack_limit() {
        let mut e = event("StepAdvanced", NoteType::Normal, 1);
        e.name = "x".repeat(300);
        let m = slack_message(&e, None);
        let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(header.chars().count(), 150);
    }

    #[test]
    fn severity_and_pending_from_notes() {
        assert_eq!(
            event("StepAdvanced", NoteType::Normal, 1).severity,
            Severity::Info
        );
        assert_eq!(
            event("CheckFailed", NoteType::Warning, 1).severity,
            Severity::Warning
        );
        assert_eq!(
            event("RolledBack", NoteType::Warning, 1).severity,
            Severity::Error
        );
        assert!(event("WaitingApproval", NoteType::Normal, 1)
            .pending
            .is_some());
        assert!(event("StepAdvanced", NoteType::Normal, 1).pending.is_none());
    }
}
