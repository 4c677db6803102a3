use super::*;

const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn ok(s: &str) -> ImageRef {
    parse_image_ref(s).unwrap_or_else(|e| panic!("{s:?} refused: {e}"))
}

#[test]
fn good_references_parse_into_their_parts_and_print_back() {
    let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        ("nginx", None, "nginx", None),
        ("nginx:1.27", None, "nginx", Some("1.27")),
        (
            "library/nginx:latest",
            None,
            "library/nginx",
            Some("latest"),
        ),
        (
            "ghcr.io/acme/shop/podinfo:v6.7.1",
            Some("ghcr.io"),
            "acme/shop/podinfo",
            Some("v6.7.1"),
        ),
        (
            "registry.example:5000/team/app:2026-11-30_1",
            Some("registry.example:5000"),
            "team/app",
            Some("2026-11-30_1"),
        ),
        ("localhost/app:dev", Some("localhost"), "app", Some("dev")),
        ("localhost:5000/app", Some("localhost:5000"), "app", None),
        // Docker's rule: an upper-case first component is a host.
        ("MyRegistry/app:1", Some("MyRegistry"), "app", Some("1")),
        (
            "a.b-c/x__y/z--w.v_u:_T",
            Some("a.b-c"),
            "x__y/z--w.v_u",
            Some("_T"),
        ),
    ];
    for (s, registry, path, tag) in cases {
        let r = ok(s);
        assert_eq!(
            (r.registry.as_deref(), r.path.as_str(), r.tag.as_deref()),
            (*registry, *path, *tag),
            "{s}"
        );
        assert_eq!(r.digest, None, "{s}");
        assert_eq!(r.to_string(), *s);
    }
}

#[test]
fn digests_with_and_without_a_tag() {
    let r = ok(&format!("ghcr.io/acme/app:1.2@{SHA}"));
    assert_eq!(r.tag.as_deref(), Some("1.2"));
    assert_eq!(r.digest.as_deref(), Some(SHA));
    let r = ok(&format!("acme/app@{SHA}"));
    assert_eq!((r.tag, r.digest.as_deref()), (None, Some(SHA)));
    let long = format!("sha512:{}", "ab".repeat(64));
    assert_eq!(ok(&format!("app@{long}")).digest, Some(long));
}

#[test]
fn bad_references_are_refused_with_the_reason() {
    use ImageRefError as E;
    let cases: Vec<(String, ImageRefError)> = vec![
        (String::new(), E::Empty),
        (":tag".into(), E::Empty),
        ("app :1".into(), E::Whitespace),
        ("app:1\n".into(), E::Whitespace),
        ("app\u{7}".into(), E::Whitespace),
        ("App:1".into(), E::Path("App".into())),
        ("acme/App:1".into(), E::Path("App".into())),
        ("ghcr.io/acme//app".into(), E::Path(String::new())),
        ("ghcr.io/acme/app/".into(), E::Path(String::new())),
        ("acme/-app".into(), E::Path("-app".into())),
        ("acme/app.".into(), E::Path("app.".into())),
        ("acme/a..b".into(), E::Path("a..b".into())),
        ("acme/a___b".into(), E::Path("a___b".into())),
        ("acme/a._b".into(), E::Path("a._b".into())),
        ("acme/a+b".into(), E::Path("a+b".into())),
        ("ghcr.io/".into(), E::Path(String::new())),
        ("app:".into(), E::Tag(String::new())),
        ("app:.hidden".into(), E::Tag(".hidden".into())),
        ("app:-x".into(), E::Tag("-x".into())),
        ("app:a/b".into(), E::Registry("app:a".into())),
        ("app:1:2".into(), E::Path("app:1".into())),
        (format!("app:{}", "t".repeat(129)), E::Tag("t".repeat(129))),
        ("reg.io:0/app".into(), E::Registry("reg.io:0".into())),
        (
            "reg.io:65536/app".into(),
            E::Registry("reg.io:65536".into()),
        ),
        ("reg.io:http/app".into(), E::Registry("reg.io:http".into())),
        ("-reg.io/app".into(), E::Registry("-reg.io".into())),
        ("reg..io/app".into(), E::Registry("reg..io".into())),
        (
            "reg_io.example/app".into(),
            E::Registry("reg_io.example".into()),
        ),
        ("app@sha256:abc".into(), E::Digest("sha256:abc".into())),
        (
            format!("app@sha256:{}", "A".repeat(64)),
            E::Digest(format!("sha256:{}", "A".repeat(64))),
        ),
        ("app@md5:0123".into(), E::Digest("md5:0123".into())),
        (
            format!("app@{SHA}@{SHA}"),
            E::Digest(format!("{SHA}@{SHA}")),
        ),
        (format!("a/{}", "b".repeat(254)), E::NameTooLong),
    ];
    for (s, want) in cases {
        assert_eq!(parse_image_ref(&s), Err(want), "{s:?}");
    }
}

#[test]
fn the_name_limit_counts_host_and_path_but_not_the_tag() {
    let name = format!("reg.io/{}", "a".repeat(IMAGE_NAME_MAX - "reg.io/".len()));
    assert_eq!(name.len(), IMAGE_NAME_MAX);
    ok(&format!("{name}:{}", "t".repeat(IMAGE_TAG_MAX)));
    assert_eq!(
        parse_image_ref(&format!("{name}a")),
        Err(ImageRefError::NameTooLong)
    );
}

#[test]
fn every_error_says_what_is_wrong_in_one_line() {
    for s in ["", "a b", "App", "a:-", "a@x", "r..io/a"] {
        let e = parse_image_ref(s).unwrap_err().to_string();
        assert!(!e.is_empty() && !e.contains('\n'), "{s:?}: {e}");
    }
    assert!(IMAGE_REF_FORMAT.contains("sha256"));
}
