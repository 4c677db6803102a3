// Metric charts of the release page, drawn with uPlot: per metric the canary's and the
// primary's values over the release with the limit the judge applied and the checks
// that did not pass; for sequential metrics the evidence against its 1/alpha line.
"use strict";

window.serinCharts = (function () {
  const COLORS = { canary: "#d9480f", primary: "#2457d6", limit: "#667085", bad: "#c0262d" };
  const charts = [];

  // The chart fits its box (a grid cell, as wide as a phone's screen at the most).
  function width(box) {
    return Math.max(200, box.clientWidth - 16);
  }

  function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }

  function chart(container, title, opts, data) {
    const box = document.createElement("div");
    box.className = "chart";
    const h = document.createElement("h3");
    h.textContent = title;
    box.append(h);
    container.append(box);
    opts.width = width(box);
    opts.height = 220;
    opts.legend = { live: false };
    const u = new uPlot(opts, data, box);
    charts.push(u);
    return box;
  }

  function valuesChart(container, m) {
    const pts = m.points || [];
    const x = pts.map((p) => Date.parse(p.at) / 1000);
    const canary = pts.map((p) => num(p.value));
    const primary = pts.map((p) => num(p.baseline));
    const limit = pts.map((p) => num(p.limit));
    const failed = pts.map((p) => (p.verdict === "Pass" ? null : num(p.value) ?? num(p.baseline) ?? num(p.limit) ?? 0));
    const box = chart(container, m.name + (m.dryRun ? " (dry run)" : ""), {
      series: [
        {},
        { label: "canary", stroke: COLORS.canary, width: 2 },
        { label: "primary", stroke: COLORS.primary, width: 2 },
        { label: "limit", stroke: COLORS.limit, dash: [6, 4], width: 1 },
        { label: "not passing", stroke: COLORS.bad, width: 0, paths: () => null,
          points: { show: true, size: 9, fill: COLORS.bad, stroke: COLORS.bad } },
      ],
      axes: [{}, { size: 60 }],
    }, [x, canary, primary, limit, failed]);
    box.dataset.metric = m.name;
    box.dataset.canaryPoints = String(canary.filter((v) => v !== null).length);
    box.dataset.primaryPoints = String(primary.filter((v) => v !== null).length);
    const reason = document.createElement("p");
    reason.className = "reason";
    reason.textContent = m.verdict + ": " + m.reason;
    box.append(reason);
  }

  function evidenceChart(container, m) {
    const pts = (m.points || []).filter((p) => num(p.evidence) !== null);
    const line = num(m.sequential && m.sequential.threshold);
    if (!pts.length || line === null) return;
    const x = pts.map((p) => Date.parse(p.at) / 1000);
    // A log scale needs positive values; evidence near zero is drawn at its floor.
    const floor = 1e-3;
    const ev = pts.map((p) => Math.max(floor, p.evidence));
    const box = chart(container, m.name + ": evidence against the primary", {
      scales: { y: { distr: 3 } },
      series: [
        {},
        { label: "e-value", stroke: COLORS.canary, width: 2 },
        { label: "1/alpha (rolls back)", stroke: COLORS.bad, dash: [6, 4], width: 1 },
      ],
      axes: [{}, { size: 60 }],
    }, [x, ev, pts.map(() => line)]);
    box.dataset.metric = m.name + ":evidence";
    box.dataset.evidencePoints = String(ev.length);
  }

  function draw(container, metrics) {
    while (charts.length) charts.pop().destroy();
    container.replaceChildren();
    if (typeof uPlot === "undefined") {
      container.textContent = "charts unavailable (uPlot did not load)";
      return;
    }
    if (!metrics.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No measurements in this release yet.";
      container.append(p);
      return;
    }
    for (const m of metrics) {
      valuesChart(container, m);
      evidenceChart(container, m);
    }
  }

  window.addEventListener("resize", () => {
    for (const u of charts) {
      const box = u.root.parentElement;
      if (box) u.setSize({ width: width(box), height: 220 });
    }
  });

  return { draw: draw };
})();
