//! serin-core stays sans-IO: no Kubernetes client or runtime, async runtime or HTTP
//! stack anywhere in its normal dependency tree, so I/O in the core does not compile.

use std::process::Command;

/// Crates that would let the core do I/O (kube-core and kube-derive are types only).
const FORBIDDEN: &[&str] = &[
    "kube",
    "kube-client",
    "kube-runtime",
    "tokio",
    "reqwest",
    "hyper",
];

#[test]
fn serin_core_depends_on_no_io_crate() {
    // Offline: the build that runs this test has already fetched the packages.
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-p", "serin-core", "-e", "normal"])
        .args(["--prefix", "none", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"serin-core"), "unexpected tree:\n{stdout}");
    let found: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|f| crates.contains(f))
        .collect();
    assert!(
        found.is_empty(),
        "serin-core depends on {found:?}:\n{stdout}"
    );
}
