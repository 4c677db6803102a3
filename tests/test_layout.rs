//! One way to lay out unit tests (README, "Tests"): a module's tests sit beside it, in
//! `<name>_tests.rs` (or `<name>_<concern>_tests.rs`) next to a file module, in
//! `tests.rs` or `tests/` inside a directory module, or inline in `mod tests`. This
//! walks the sources and names every file that breaks the rule.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files under `root` that break the layout, with why.
fn layout_problems(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dir = file.parent().unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        let text = fs::read_to_string(file).unwrap();
        let in_tests_dir = dir.file_name().is_some_and(|d| d == "tests");
        let is_test_file = name.ends_with("_tests.rs") || name == "tests.rs" || in_tests_dir;
        let has_test = text.contains("#[test]") || text.contains("#[tokio::test");
        if in_tests_dir {
            // A tests/ directory also holds its mod.rs, fixtures and harnesses.
            if text.trim().is_empty() {
                problems.push(format!("{shown}: an empty file"));
            }
        } else if is_test_file && !has_test {
            problems.push(format!("{shown}: a test file without a test"));
        }
        if let Some(stem) = name.strip_suffix("_tests.rs") {
            // Declared by its module with #[path], and named after it.
            let owner = files.iter().find(|f| {
                f.parent() == Some(dir)
                    && f.file_stem().is_some_and(|s| {
                        let s = s.to_string_lossy();
                        stem == s || stem.starts_with(&format!("{s}_"))
                    })
                    && fs::read_to_string(f)
                        .unwrap()
                        .contains(&format!("#[path = \"{name}\"]"))
            });
            if owner.is_none() {
                problems.push(format!(
                    "{shown}: no sibling <module>.rs declares it with #[path = \"{name}\"] (name it <module>_tests.rs or <module>_<concern>_tests.rs)"
                ));
            }
        }
        if name == "tests.rs" {
            let owner = dir.join("mod.rs");
            let declared = fs::read_to_string(&owner).is_ok_and(|t| t.contains("mod tests;"));
            if !declared {
                problems.push(format!(
                    "{shown}: tests.rs belongs inside a directory module whose mod.rs declares `mod tests;`"
                ));
            }
        }
    }
    problems
}

#[test]
fn unit_tests_sit_beside_their_module() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = layout_problems(&manifest.join("src"));
    problems.extend(layout_problems(&manifest.join("crates/serin-core/src")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layout_check_names_a_misplaced_or_empty_test_file() {
    let root = std::env::temp_dir().join(format!("serin-layout-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::write(
        root.join("a.rs"),
        "#[cfg(test)]\n#[path = \"a_tests.rs\"]\nmod tests;\n",
    )
    .unwrap();
    fs::write(root.join("a_tests.rs"), "#[test]\nfn t() {}\n").unwrap();
    // Named after no module, and empty.
    fs::write(root.join("orphan_tests.rs"), "\n").unwrap();
    // A directory module that does not declare its tests.rs.
    fs::write(root.join("dir/mod.rs"), "pub fn f() {}\n").unwrap();
    fs::write(root.join("dir/tests.rs"), "#[test]\nfn t() {}\n").unwrap();
    let problems = layout_problems(&root);
    fs::remove_dir_all(&root).unwrap();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems
        .iter()
        .any(|p| p.starts_with("orphan_tests.rs: a test file without a test")));
    assert!(problems
        .iter()
        .any(|p| p.starts_with("orphan_tests.rs: no sibling")));
    assert!(problems
        .iter()
        .any(|p| p.starts_with("dir/tests.rs: tests.rs belongs")));
}
