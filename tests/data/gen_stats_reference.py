#!/usr/bin/env python3
"""Reference values for serin's statistics kernels, computed offline.

Run from the repository root:  python3 tests/data/gen_stats_reference.py
Needs scipy and statsmodels (pip install scipy statsmodels) and, for the
Hodges-Lehmann intervals, R (Debian package r-base-core). Writes
tests/data/stats_reference.json, which tests/stats_reference.rs checks against.
"""
import json
import subprocess
import sys

import numpy as np
import scipy
import statsmodels
from scipy.stats import mannwhitneyu
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    test_proportions_2indep,
)

rng = np.random.default_rng(20261122)


def sample_cases():
    cases = []
    # Classic small examples.
    cases.append(("kayenta", [10, 20, 30, 40], [1, 2, 3, 4]))
    # Hollander & Wolfe (1973) p. 69, as in R's ?wilcox.test: permeability constants.
    cases.append(("hollander_wolfe", [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46],
                  [1.15, 0.88, 0.90, 0.74, 1.21]))
    cases.append(("heavy_ties", [1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 5, 5], [1, 2, 2, 3, 3, 3, 3, 4, 4, 6]))
    cases.append(("identical", [5.0] * 8, [5.0] * 9))
    cases.append(("negative_shift", [-3.5, -2.0, -2.0, -1.0, 0.0, 0.5], [0.0, 1.0, 1.5, 2.0, 2.0, 3.5, 4.0]))
    for n, m, shift, digits in [(30, 25, 0.0, 1), (50, 80, 0.3, 1), (200, 150, 0.1, 2),
                                (400, 500, -0.05, None), (1000, 1200, 0.02, 1), (3000, 2500, 0.0, 0)]:
        x = rng.lognormal(0.0, 0.5, n) * (1 + shift)
        y = rng.lognormal(0.0, 0.5, m)
        if digits is not None:
            x, y = np.round(x, digits), np.round(y, digits)
        cases.append((f"lognormal_{n}x{m}_shift{shift}_round{digits}", x.tolist(), y.tolist()))
    return cases


def r_hodges_lehmann(cases):
    """R's wilcox.test(conf.int=TRUE, exact=FALSE) estimate and 95% / 90% intervals."""
    lines = []
    for i, (_, x, y) in enumerate(cases):
        xs = ",".join(repr(float(v)) for v in x)
        ys = ",".join(repr(float(v)) for v in y)
        for conf in (0.95, 0.90):
            lines.append(
                f"r <- tryCatch(wilcox.test(c({xs}), c({ys}), conf.int=TRUE, exact=FALSE, "
                f"conf.level={conf}), error=function(e) NULL); "
                f"if (is.null(r)) cat('{i} {conf} NA NA NA NA\\n') else "
                f"cat({i}, {conf}, sprintf('%.17g', c(r$estimate, r$conf.int, r$p.value)), '\\n')"
            )
    script = "options(warn=-1)\n" + "\n".join(lines) + "\n"
    out = subprocess.run(["Rscript", "-"], input=script, capture_output=True, text=True, check=True)
    res = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        i, conf = int(parts[0]), float(parts[1])
        vals = [None if v == "NA" else float(v) for v in parts[2:6]]
        res[(i, conf)] = vals
    version = subprocess.run(["Rscript", "-e", "cat(R.version.string)"], capture_output=True,
                             text=True, check=True).stdout
    return res, version


def main():
    cases = sample_cases()
    try:
        hl, r_version = r_hodges_lehmann(cases)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"R not available ({e}); HL intervals omitted", file=sys.stderr)
        hl, r_version = {}, None
    mw = []
    for i, (name, x, y) in enumerate(cases):
        r = mannwhitneyu(x, y, method="asymptotic", use_continuity=True, alternative="two-sided")
        entry = {"name": name, "x": [float(v) for v in x], "y": [float(v) for v in y],
                 "u": float(r.statistic), "p_value": float(r.pvalue), "hl": [],
                 # The Hodges-Lehmann estimate by brute force: median of all x_i - y_j.
                 "hl_median": float(np.median(np.subtract.outer(np.asarray(x, float),
                                                                np.asarray(y, float))))}
        for conf in (0.95, 0.90):
            vals = hl.get((i, conf))
            if vals and vals[0] is not None:
                entry["hl"].append({"confidence": conf, "estimate": vals[0], "low": vals[1],
                                    "high": vals[2], "r_p_value": vals[3]})
        mw.append(entry)

    props = []
    count_cases = [(12, 1000, 5, 1000), (30, 1200, 40, 10800), (0, 500, 3, 4500), (7, 150, 20, 1350),
                   (250, 5000, 200, 5000), (3, 120, 5, 1080), (56, 70, 48, 80), (1, 400, 0, 3600)]
    for x1, n1, x0, n0 in count_cases:
        for compare, value, alt in [("diff", 0.0, "larger"), ("diff", 0.005, "larger"),
                                    ("diff", -0.01, "smaller"), ("ratio", 1.0, "larger"),
                                    ("ratio", 1.5, "larger"), ("ratio", 0.8, "smaller")]:
            r = test_proportions_2indep(x1, n1, x0, n0, value=value, method="score", compare=compare,
                                        alternative=alt, correction=False)
            props.append({"x1": x1, "n1": n1, "x0": x0, "n0": n0, "compare": compare, "value": value,
                          "alternative": alt, "z": float(r.statistic), "p_value": float(r.pvalue)})
    newcombe = []
    for x1, n1, x0, n0 in count_cases:
        for conf in (0.95, 0.90):
            lo, hi = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff",
                                                alpha=1 - conf)
            newcombe.append({"x1": x1, "n1": n1, "x0": x0, "n0": n0, "confidence": conf,
                             "low": float(lo), "high": float(hi)})

    out = {"generator": "tests/data/gen_stats_reference.py", "scipy": scipy.__version__,
           "statsmodels": statsmodels.__version__, "r": r_version,
           "mann_whitney": mw, "proportions": props, "newcombe": newcombe}
    with open("tests/data/stats_reference.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{len(mw)} sample cases, {len(props)} proportion tests, {len(newcombe)} intervals")


if __name__ == "__main__":
    main()
