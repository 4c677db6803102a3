//! The fuzz targets' corpora (fuzz/corpus/<target>/, grown by `cargo fuzz run`) replayed
//! through the same harnesses on stable, plus a short seeded mutation run of each: what
//! the fuzzers found once stays found. A harness that panics fails the test.

use std::path::Path;

type Harness = fn(&[u8]);

const TARGETS: &[(&str, Harness)] = &[
    ("annotations", serin::fuzzing::annotations),
    ("template_args", serin::fuzzing::template_args),
    ("prometheus_answer", serin::fuzzing::prometheus_answer),
    ("webhook_results", serin::fuzzing::webhook_results),
    ("approval_request", serin::fuzzing::approval_request),
    ("slack_request", serin::fuzzing::slack_request),
];

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn every_corpus_input_runs_without_panicking() {
    for (target, harness) in TARGETS {
        let inputs = corpus(target);
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} is empty");
        for input in &inputs {
            harness(input);
        }
        eprintln!("{target}: {} corpus inputs", inputs.len());
    }
}

/// xorshift64*: deterministic, so a failure here reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers: separators, quotes, braces, PromQL and YAML syntax.
const DICTIONARY: &[&[u8]] = &[
    b"=",
    b",",
    b"(",
    b")",
    b"\n",
    b"{{",
    b"}}",
    b"args.",
    b"\"",
    b"\\",
    b"/",
    b"---\n",
    b"1m",
    b"0.5",
    b"-1",
    b"NaN",
    b"1e308",
    b"\xff",
    b"}",
    b"[",
    b"]",
    b":",
    b"none",
    b"enabled=true\n",
    b"analysis=",
    b"steps=",
    b"{{args.x}}",
    b"\x00",
    b"\"status\":\"success\"",
    b"\"resultType\":\"matrix\"",
    b"\"warnings\":[\"",
    b"\"metric\":{",
    b"Bearer ",
    b"%22",
    b"%7B",
    b"payload=",
    b"\"value\":\"",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(4) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                let n = rng.below(input.len() - i) + 1;
                input.drain(i..i + n.min(8));
            }
            _ => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let i = rng.below(input.len() + 1);
                input.splice(i..i, word.iter().copied());
            }
        }
    }
}

#[test]
fn seeded_mutations_of_the_corpora_run_without_panicking() {
    const RUNS: usize = 3_000;
    for (k, (target, harness)) in TARGETS.iter().enumerate() {
        let inputs = corpus(target);
        let mut rng = Rng(0x5eed_0000 + k as u64);
        for _ in 0..RUNS {
            let mut input = inputs[rng.below(inputs.len())].clone();
            mutate(&mut rng, &mut input);
            harness(&input);
        }
    }
}
