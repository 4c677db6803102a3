// serin dashboard: the list of Canaries and each release's page. Data come from the
// dashboard's own JSON API; changes arrive as server-sent events (no polling). DOM is
// built with textContent only: nothing from the cluster is parsed as HTML.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="serin-csrf"]').content;
  const view = document.getElementById("view");
  const live = document.getElementById("live");
  const trouble = document.getElementById("trouble");
  let current = null; // {kind: "list"} or {kind: "detail", ns, name}
  let pending = null;
  let filterText = "";
  // The answer to the last action stays on its release page across live updates.
  let lastOutcome = null;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 90) return s + "s";
    if (s < 5400) return Math.round(s / 60) + "m";
    if (s < 172800) return Math.round(s / 3600) + "h";
    return Math.round(s / 86400) + "d";
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  class Refused extends Error {
    constructor(status, error, message) {
      super(message);
      this.status = status;
      this.error = error;
    }
    describe() {
      return "Refused (" + this.status + " " + this.error + "): " + this.message;
    }
  }

  async function api(path, opts) {
    const resp = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (!resp.ok) {
      throw new Refused(resp.status, (body && body.error) || "error",
        (body && body.message) || resp.statusText);
    }
    return body;
  }

  // replaceChildren would show a null as the text "null".
  function put(parent, ...children) {
    parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  }

  function phase(p) { return el("span", { class: "phase " + p, "data-test": "phase", text: p }); }

  function bar(weight) {
    const fill = el("span");
    fill.style.width = Math.max(0, Math.min(100, weight)) + "%";
    return el("span", { class: "bar", title: weight + "% to the canary" }, fill);
  }

  function verdictClass(v) {
    return v ? "verdict-" + v.split(" ")[0] : "";
  }

  // ---- list ----
  function renderList(data) {
    document.getElementById("source").textContent = data.source;
    const filter = el("input", {
      type: "search", placeholder: "filter by name, namespace, phase…",
      "aria-label": "filter", value: filterText, id: "filter",
    });
    const rows = data.rows.filter((r) => {
      const f = filterText.trim().toLowerCase();
      return !f || [r.namespace, r.name, r.phase, r.waiting || ""].join(" ").toLowerCase().includes(f);
    });
    const body = el("tbody", {}, rows.map((r) => el("tr", { "data-test": "row", "data-name": r.namespace + "/" + r.name },
      el("td", { "data-label": "Canary" }, el("a", { href: "#/" + r.namespace + "/" + r.name, text: r.name }),
        el("div", { class: "muted", text: r.namespace })),
      el("td", { "data-label": "Phase" }, phase(r.phase),
        r.stalled ? el("div", { class: "verdict-Fail", "data-test": "stalled", title: r.stalled,
          text: "no controller acting" }) : null),
      el("td", { "data-label": "Weight" }, bar(r.weight), " " + r.weight + "%"),
      el("td", { "data-label": "Step", text: r.step ? r.step + "/" + r.steps : "–" }),
      el("td", { "data-label": "Age", class: "age", "data-since": r.releaseStarted || r.created || "",
        text: ago(r.releaseStarted || r.created) }),
      el("td", { "data-label": "Last verdict", class: verdictClass(r.lastVerdict), text: r.lastVerdict || "" }),
      el("td", { "data-label": "Waiting", text: r.waiting || "" }),
    )));
    const table = el("table", { class: "list" },
      el("thead", {}, el("tr", {}, ["Canary", "Phase", "Weight", "Step", "Age", "Last verdict", "Waiting"].map((h) => el("th", { text: h })))),
      body);
    const notes = data.notes.map((n) => el("div", { class: "banner warn", text: n }));
    const empty = data.rows.length === 0 ? el("p", { class: "muted", text: "No Canaries here yet: annotate a Deployment with serin.dev/canary." }) : null;
    put(view, el("h2", { text: "Canaries" }), notes, filter, table, empty);
    filter.addEventListener("input", () => {
      filterText = filter.value;
      const pos = filter.selectionStart;
      renderList(data);
      const again = document.getElementById("filter");
      again.focus();
      again.setSelectionRange(pos, pos);
    });
  }

  // ---- detail ----
  function fact(label, value) {
    return [el("dt", { text: label }), el("dd", {}, value)];
  }

  function renderDetail(d, message) {
    const s = d.status;
    const r = d.row;
    document.title = "serin · " + d.namespace + "/" + d.name;
    const head = el("div", {},
      el("a", { href: "#/", text: "← all Canaries" }),
      el("h2", {}, d.namespace + "/" + d.name + " ", phase(s.phase)));
    const liveness = r.liveness || null;
    const warn = r.stalled
      ? el("div", { class: "banner warn", "data-test": "stalled", text: "Warning: " + r.stalled }) : null;
    const facts = el("dl", { class: "facts" },
      fact("Weight", [bar(s.canaryWeight || 0), " " + (s.canaryWeight || 0) + "% to the canary"]),
      fact("Step", r.step ? r.step + " of " + r.steps : "–"),
      fact("Revisions", "stable " + (s.stableRevision || "–") + ", canary " + (s.canaryRevision || "–")),
      fact("Message", s.message || "–"),
      r.waiting ? fact("Waiting for", r.waiting) : null,
      liveness && liveness.lastActed ? fact("Last acted", when(liveness.lastActed) + " (" + ago(liveness.lastActed) + " ago)") : null);
    const key = d.namespace + "/" + d.name;
    if (message) lastOutcome = { key: key, message: message };
    else if (lastOutcome && lastOutcome.key === key) message = lastOutcome.message;
    const out = el("div", { id: "outcome", role: "status" });
    if (message) out.append(message);
    const buttons = el("div", { class: "actions", id: "actions" },
      d.actions.map((a) => el("button", {
        type: "button", "data-verb": a.verb,
        onclick: () => confirmAndAct(d, a),
      }, a.verb[0].toUpperCase() + a.verb.slice(1))));
    const charts = el("div", { class: "charts", id: "charts" });
    const history = (s.history || []).slice().reverse();
    const histTable = history.length ? el("table", { class: "list", id: "history" },
      el("thead", {}, el("tr", {}, ["Revision", "Result", "Started", "Ended", "Step", "Why"].map((h) => el("th", { text: h })))),
      el("tbody", {}, history.map((h) => el("tr", {},
        el("td", { "data-label": "Revision", text: h.revision }),
        el("td", { "data-label": "Result", class: verdictClass(h.result), text: h.result }),
        el("td", { "data-label": "Started", text: when(h.startedAt) }),
        el("td", { "data-label": "Ended", text: when(h.finishedAt) }),
        el("td", { "data-label": "Step", text: h.step + "/" + h.steps + " (" + h.weight + "%)" }),
        el("td", { "data-label": "Why", text: h.reason }))))) : el("p", { class: "muted", text: "No release has ended yet." });
    const timeline = el("ol", { class: "timeline", id: "timeline" },
      d.timeline.slice().reverse().map((e) => el("li", { class: e.kind },
        el("time", { datetime: e.at, text: when(e.at) }), el("span", { text: e.text }))));
    const evErr = d.eventsError ? el("div", { class: "banner warn", text: "Events could not be read: " + d.eventsError }) : null;
    put(view, head, warn, facts, buttons, out,
      el("section", {}, el("h3", { text: "Metrics: canary and primary" }), charts),
      el("section", {}, el("h3", { text: "Timeline" }), evErr, timeline),
      el("section", {}, el("h3", { text: "History" }), histTable));
    window.serinCharts.draw(charts, s.metrics || []);
  }

  function confirmAndAct(d, action) {
    const dlg = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = action.confirm;
    dlg.returnValue = "";
    dlg.onclose = async () => {
      if (dlg.returnValue !== "yes") return;
      const out = document.getElementById("outcome");
      out.replaceChildren(el("span", { class: "muted", text: "sending…" }));
      try {
        const res = await api("/api/canaries/" + encodeURIComponent(d.namespace) + "/" +
          encodeURIComponent(d.name) + "/" + action.verb, {
          method: "POST",
          headers: { "content-type": "application/json", "x-serin-csrf": csrf },
          body: JSON.stringify({ passage: action.passage }),
        });
        const text = (res.changed ? "" : "Unchanged: ") + res.message;
        await load(el("div", { class: "banner okmsg", "data-test": "outcome", text: text }));
      } catch (e) {
        const text = e instanceof Refused ? e.describe() : "Failed: " + e.message;
        const refused = el("div", { class: "banner error", "data-test": "outcome", text: text });
        lastOutcome = { key: d.namespace + "/" + d.name, message: refused };
        out.replaceChildren(refused);
      }
    };
    dlg.showModal();
  }

  // ---- routing and live updates ----
  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    return parts.length === 2 ? { kind: "detail", ns: parts[0], name: parts[1] } : { kind: "list" };
  }

  async function load(message) {
    current = route();
    try {
      if (current.kind === "list") {
        renderList(await api("/api/canaries"));
      } else {
        renderDetail(await api("/api/canaries/" + encodeURIComponent(current.ns) + "/" +
          encodeURIComponent(current.name)), message);
      }
    } catch (e) {
      const text = e instanceof Refused ? e.describe() : "Cannot load: " + e.message;
      put(view, el("div", { class: "banner error", "data-test": "refused", text: text }),
        current.kind === "detail" ? el("a", { href: "#/", text: "← all Canaries" }) : null);
    }
  }

  function schedule() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 250);
  }

  function connect() {
    const es = new EventSource("/api/changes");
    es.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
    es.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("on"); });
    es.addEventListener("change", (ev) => {
      trouble.hidden = true;
      let c = null;
      try { c = JSON.parse(ev.data); } catch (_) { return; }
      if (current.kind === "list" || (c.namespace === current.ns && c.name === current.name)) schedule();
    });
    es.addEventListener("trouble", (ev) => {
      trouble.textContent = "Live updates interrupted: " + ev.data;
      trouble.hidden = false;
    });
  }

  // Relative ages on the list move with the clock; nothing is fetched for it.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.age[data-since]")) {
      td.textContent = ago(td.getAttribute("data-since"));
    }
  }, 15000);

  window.addEventListener("hashchange", () => { lastOutcome = null; load(); });
  connect();
  load();
})();
