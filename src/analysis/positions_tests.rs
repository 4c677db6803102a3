use std::collections::BTreeMap;

use promql_parser::parser::{self, Expr};

use super::*;
use crate::analysis::{check_args, render_query, RenderVars};

fn positions(q: &str) -> Vec<(String, Position)> {
    parse(q)
        .unwrap()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var { name, position } => Some((name.to_string(), position)),
            Piece::Text(_) => None,
        })
        .collect()
}

fn at(q: &str) -> Position {
    let p = positions(q);
    assert_eq!(p.len(), 1, "{q}");
    p[0].1
}

const DQ: Position = Position::Quoted {
    quote: '"',
    regex: false,
};
const RE: Position = Position::Quoted {
    quote: '"',
    regex: true,
};
const LABEL: Position = Position::LabelName { part: false };
const DURATION: Position = Position::Duration { part: false };

#[test]
fn every_place_a_variable_can_stand() {
    let table = [
        (r#"x{a="{{v}}"}"#, DQ),
        (r#"x{a = "pre-{{v}}-post"}"#, DQ),
        (r#"x{a=~"{{v}}-.*"}"#, RE),
        (r#"x{a !~ "{{v}}"}"#, RE),
        (
            "x{a='{{v}}'}",
            Position::Quoted {
                quote: '\'',
                regex: false,
            },
        ),
        ("x{a=~`{{v}}`}", Position::Raw { regex: true }),
        (r#"x{{{v}}=~"5.."}"#, LABEL),
        (r#"x{ {{v}}=~"5.."}"#, LABEL),
        (r#"x{a="b", {{v}}="c"}"#, LABEL),
        (
            r#"x{a="b", {{v}}_code="c"}"#,
            Position::LabelName { part: true },
        ),
        ("sum by ({{v}}) (x)", LABEL),
        ("sum(x) without (a, {{v}})", LABEL),
        ("x / on({{v}}) group_left(b) y", LABEL),
        ("x / ignoring(a) group_right({{v}}) y", LABEL),
        ("rate(x[{{v}}])", DURATION),
        ("rate(x[ {{v}} ])", DURATION),
        ("(x)[{{v}}:1m]", DURATION),
        ("(x)[5m:{{v}}]", DURATION),
        ("rate(x[{{v}}m])", Position::Duration { part: true }),
        ("x offset {{v}}", DURATION),
        ("rate(x[5m] OFFSET {{v}})", DURATION),
        ("histogram_quantile({{v}}, x)", Position::Number),
        ("x > {{v}}", Position::Number),
        ("x>{{v}}", Position::Number),
        ("topk({{v}}, x)", Position::Number),
        ("x @ {{v}}", Position::Number),
        ("{{v}}", Position::Number),
        ("{{v}}{job=\"a\"}", Position::Name),
        ("rate({{v}}[5m])", Position::Name),
        ("{{v}} (x)", Position::Name),
        ("{{v}}_total{job=\"a\"}", Position::Word),
        ("x{{v}}", Position::Word),
        ("job:{{v}}:rate5m", Position::Word),
        (
            "sum:trace.http.request.errors{kube_deployment:{{v}}}.as_count()",
            Position::TagValue { part: false },
        ),
        (
            "sum:x{kube_namespace:shop, service:{{v}},env:prod}",
            Position::TagValue { part: false },
        ),
        (
            "sum:x{service:{{v}}-web}",
            Position::TagValue { part: true },
        ),
        ("x # {{v}}", Position::Comment),
        // A string's end, a label list's end and a comment's end are found.
        (r#"x{a="}", b="["} > {{v}}"#, Position::Number),
        (r#"x{a="\"{"} > {{v}}"#, Position::Number),
        ("sum by (a) (x) > {{v}}", Position::Number),
        ("x # [{\n > {{v}}", Position::Number),
        // `by` as a label value or in a string is not a keyword.
        (r#"x{a="by"} + ({{v}})"#, Position::Number),
    ];
    for (q, want) in table {
        assert_eq!(at(q), want, "{q}");
    }
}

#[test]
fn the_shipped_shapes_read_as_intended() {
    let q = r#"sum(rate(x{namespace="{{namespace}}", pod=~"{{workload}}-[a-z0-9]+", {{args.statusLabel}}=~"5.."}[{{interval}}])) / (histogram_quantile(0.99, y))[{{args.lookback}}:{{args.window}}]"#;
    assert_eq!(
        positions(q),
        vec![
            ("namespace".into(), DQ),
            ("workload".into(), RE),
            ("args.statusLabel".into(), LABEL),
            ("interval".into(), DURATION),
            ("args.lookback".into(), DURATION),
            ("args.window".into(), DURATION),
        ]
    );
}

#[test]
fn a_variable_right_after_an_escaping_backslash_is_refused() {
    let e = parse(r#"x{a="\{{v}}"}"#).unwrap_err();
    assert_eq!(
        e,
        RenderError::Escaped {
            variable: "v".into()
        }
    );
    assert!(e.to_string().contains("follows a backslash"), "{e}");
    // An escaped backslash is complete: the variable stands after it.
    assert_eq!(at(r#"x{a=~"\\.{{v}}"}"#), RE);
}

#[test]
fn values_are_escaped_or_checked_for_their_position() {
    let ok = |p: Position, v: &str, literal: bool| p.place(v, literal).map(|c| c.into_owned());
    assert_eq!(ok(DQ, r#"a"b\c"#, false).as_deref(), Some(r#"a\"b\\c"#));
    assert_eq!(ok(DQ, "a\nb", false).as_deref(), Some(r"a\nb"));
    assert_eq!(ok(DQ, "a\u{7}b", false), None);
    let single = Position::Quoted {
        quote: '\'',
        regex: false,
    };
    assert_eq!(
        ok(single, r#"it's "x""#, false).as_deref(),
        Some(r#"it\'s "x""#)
    );
    // A name serin fills in is matched literally by a regex; an argument is a regex.
    assert_eq!(ok(RE, "my.app", true).as_deref(), Some(r"my\\.app"));
    assert_eq!(ok(RE, "5..|429", false).as_deref(), Some("5..|429"));
    assert_eq!(
        ok(Position::Raw { regex: true }, "a.b", true).as_deref(),
        Some(r"a\.b")
    );
    assert_eq!(ok(Position::Raw { regex: false }, "a`b", false), None);
    for good in ["code", "_x", "status_code"] {
        assert!(ok(LABEL, good, false).is_some(), "{good}");
    }
    for bad in ["", "1code", "code=\"x\"", "a-b", "a b", "a.b"] {
        assert_eq!(ok(LABEL, bad, false), None, "{bad:?}");
    }
    assert!(ok(Position::LabelName { part: true }, "2xx", false).is_some());
    for good in ["5m", "30s", "1h30m", "100ms", "2d", "1w", "1y"] {
        assert!(ok(DURATION, good, false).is_some(), "{good}");
    }
    for bad in ["", "5", "m", "5 m", "5m]", "5m:1m", "-5m", "1.5m", "5min"] {
        assert_eq!(ok(DURATION, bad, false), None, "{bad:?}");
    }
    for good in [
        "0.99", "5", "-1", "+2.5", "1e-3", ".5", "Inf", "-inf", "NaN", "0x1f",
    ] {
        assert!(ok(Position::Number, good, false).is_some(), "{good}");
    }
    for bad in [
        "",
        "x",
        "1 or vector(1)",
        "0.5)",
        "1e",
        "0x",
        "1_000",
        "--1",
        "e5",
    ] {
        assert_eq!(ok(Position::Number, bad, false), None, "{bad:?}");
    }
    for (p, good, bad) in [
        (
            Position::Name,
            "job:http_requests:rate5m",
            "up or vector(1)",
        ),
        (Position::Word, "requests_total", "x}"),
        (Position::Comment, "a # b", "a\nvector(1)"),
    ] {
        assert!(ok(p, good, false).is_some(), "{good}");
        assert_eq!(ok(p, bad, false), None, "{bad:?}");
    }
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The label matchers of the one selector `q` parses to.
fn matchers(q: &str) -> Vec<(String, String)> {
    let e = parser::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let Expr::VectorSelector(vs) = e else {
        panic!("{q} is not one selector: {e:?}");
    };
    assert!(vs.matchers.or_matchers.is_empty(), "{q}");
    let mut m: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .chain(vs.name.map(|n| ("__name__".to_string(), n)))
        .collect();
    m.sort();
    m
}

const INJECTION: &str = r#"x"} or vector(1) or foo{a=""#;

#[test]
fn an_injection_in_a_quoted_matcher_stays_a_matcher_value() {
    let vars = RenderVars {
        args: args(&[("ns", INJECTION)]),
        ..RenderVars::default()
    };
    let q = render_query(r#"up{namespace="{{args.ns}}", job="a"}"#, &vars).unwrap();
    assert_eq!(
        matchers(&q),
        vec![
            ("__name__".into(), "up".into()),
            ("job".into(), "a".into()),
            ("namespace".into(), INJECTION.into()),
        ],
        "{q}"
    );
    // Also in a regex matcher, and with a trailing backslash that would eat the quote.
    for (q, v) in [
        (r#"up{code=~"{{args.code}}"}"#, INJECTION),
        (r#"up{code="{{args.code}}"}"#, r"x\"),
        (r#"up{code='{{args.code}}'}"#, r#"\"} or vector(1) #'"#),
    ] {
        let vars = RenderVars {
            args: args(&[("code", v)]),
            ..RenderVars::default()
        };
        let q = render_query(q, &vars).unwrap();
        assert_eq!(matchers(&q)[1], ("code".into(), v.to_string()), "{q}");
    }
}

#[test]
fn an_injection_anywhere_else_is_refused_with_what_is_accepted() {
    for (q, position) in [
        (r#"up{ {{args.x}}="a"}"#, "a label name position"),
        ("rate(up[{{args.x}}])", "a duration position"),
        (
            "histogram_quantile({{args.x}}, up)",
            "a bare number position",
        ),
        (
            "{{args.x}}{job=\"a\"}",
            "a metric or function name position",
        ),
        ("up_{{args.x}}", "part of a bare word"),
        ("up # {{args.x}}", "a comment"),
    ] {
        let e = check_args(q, &args(&[("x", "1 or vector(1) or foo{a=\"\n")])).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("argument \"x\" = \"1 or vector(1)"),
            "{text}"
        );
        assert!(text.contains(position), "{q}: {text}");
        assert!(text.contains("accepted: "), "{text}");
    }
}

#[test]
fn values_longer_than_the_bound_are_cut_in_the_message() {
    let long = "y".repeat(500);
    let e = check_args("x > {{args.x}}", &args(&[("x", &long)])).unwrap_err();
    assert!(e.to_string().len() < 300, "{e}");
}

/// A Datadog tag value takes a Kubernetes name, and nothing that could end the tag,
/// the filter or the query, widen it (`*`) or negate it (`!`).
#[test]
fn a_tag_value_takes_a_name_and_nothing_that_ends_or_widens_the_tag() {
    let at = Position::TagValue { part: false };
    for ok in ["podinfo-primary", "shop", "web_1.v2", "A9"] {
        assert_eq!(at.place(ok, true).as_deref(), Some(ok), "{ok}");
        assert_eq!(at.place(ok, false).as_deref(), Some(ok), "{ok}");
    }
    for bad in [
        "",
        "a,env:prod",
        "a}",
        "a} or x",
        "*",
        "!a",
        "a b",
        "a:b",
        "a\"b",
        "a/b",
    ] {
        assert_eq!(at.place(bad, false), None, "{bad:?}");
    }
    assert_eq!(
        Position::TagValue { part: true }
            .place("", false)
            .as_deref(),
        Some("")
    );
}
