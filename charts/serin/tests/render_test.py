#!/usr/bin/env python3
"""Render charts/serin with Helm's own engine and check the result.

Helm's engine comes from the PyPI package helm-python-sdk (Helm v4's Go SDK as a C
library, loaded with ctypes): the same template functions, value coalescing, schema
validation and lint as `helm template` / `helm lint`, with no cluster and no helm binary.
`.ci/run` installs it; tests/helm_chart.rs runs this script and fails when it fails.

    python3 charts/serin/tests/render_test.py [--emit rendered.json]

--emit writes every scenario's parsed documents as JSON, for the Rust side, which
round-trips each built-in kind through k8s-openapi's types to catch misspelt fields.
"""

import json
import os
import re
import sys
import time

try:
    import helm_python as helm
    import yaml
except ImportError as e:  # fail, never skip
    sys.stderr.write(
        f"render_test.py: {e}\n"
        "install the chart test's tools: python3 -m pip install helm-python-sdk pyyaml\n"
    )
    sys.exit(2)

CHART = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RELEASE, NS = "serin", "serin-system"
# The one value without a default: the approval API's TLS Secret (or insecureHttp).
MINIMAL = {"api": {"tls": {"secretName": "serin-api-tls"}}}
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
    return cond


def load_values(path):
    with open(os.path.join(CHART, path)) as f:
        return yaml.safe_load(f) or {}


def render(chart, values, name=RELEASE, namespace=NS):
    """Schema-check and render like `helm template`; returns (docs, raw text by template)."""
    chart.validate_schema(values)
    out = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = path
                docs.append(doc)
    return docs, out


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0] if found else {}


def grants(rules):
    """(apiGroup, resource, verb) triples of a rule list."""
    out = set()
    for r in rules or []:
        check(set(r) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule keys {r}")
        check("*" not in r["verbs"] and "*" not in r["resources"], f"wildcard in {r}")
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    out.add((g, res, v))
    return out


def triples(spec):
    out = set()
    for group, resource, verbs in spec:
        for v in verbs.split():
            out.add((group, resource, v))
    return out


# What the controller calls, from src/ (see the README's RBAC section). Namespaced
# resources: a ClusterRole in all-namespaces mode, a Role with controller.watchNamespace.
WORKLOAD = triples([
    ("serin.dev", "canaries", "get list watch create patch delete"),
    ("serin.dev", "canaries/status", "patch"),
    ("serin.dev", "canaries/finalizers", "update"),
    ("serin.dev", "analysistemplates", "get list watch"),
    ("serin.dev", "releasepolicies", "list watch"),
    ("serin.dev", "releasepolicies/status", "patch"),
    ("apps", "deployments", "get list watch create patch delete"),
    ("apps", "deployments/finalizers", "update"),
    ("apps", "controllerrevisions", "get list create patch delete"),
    ("autoscaling", "horizontalpodautoscalers", "get list watch create patch delete"),
    ("", "services", "get list watch create patch delete"),
    ("", "configmaps", "get create patch delete"),
    ("", "secrets", "get create patch delete"),
    ("events.k8s.io", "events", "create patch"),
])
# A router's objects: server-side apply creates them (create + patch), serin watches
# them metadata-only so a change wakes the Canary (list + watch), reads and deletes them.
ROUTER_VERBS = "get list watch create patch delete"
ROUTERS = {
    "istio": triples([("networking.istio.io", "virtualservices", ROUTER_VERBS),
                      ("networking.istio.io", "destinationrules", ROUTER_VERBS)]),
    "gatewayApi": triples([("gateway.networking.k8s.io", "httproutes", ROUTER_VERBS)]),
    "ingressNginx": triples([("networking.k8s.io", "ingresses", ROUTER_VERBS)]),
    "smi": triples([("split.smi-spec.io", "trafficsplits", ROUTER_VERBS)]),
}
CLUSTER = triples([
    ("serin.dev", "clusteranalysistemplates", "get list watch"),
    ("serin.dev", "notifiers", "list watch"),
    ("serin.dev", "clusternotifiers", "list watch"),
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ("serin.dev", "clusterreleasepolicies", "list watch"),
    ("serin.dev", "clusterreleasepolicies/status", "patch"),
    # ClusterReleasePolicy namespaceSelectors (and sharding) read Namespace labels.
    ("", "namespaces", "list watch"),
])
NAMESPACES = triples([("", "namespaces", "list watch")])
LEASE = triples([("coordination.k8s.io", "leases", "get create update")])


def readme_rbac():
    """The (apiGroup, resource, verb) triples of the README's table "RBAC: what the
    controller may do, and why". A row's first cell names resources in backticks, each
    run of them followed by its API group in parentheses ("core" for ""); the second
    cell lists the verbs."""
    text = open(os.path.join(CHART, "..", "..", "README.md")).read()
    heading = "### RBAC: what the controller may do, and why"
    if not check(heading in text, f"README has no section {heading!r}"):
        return set()
    rows = []
    for line in text.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    out = set()
    for row in rows[2:]:  # header and separator
        cells = [c.strip() for c in row.strip("|").split("|")]
        pending = []
        for name, group in re.findall(r"`([^`]+)`|\(([^)]+)\)", cells[0]):
            if name:
                pending.append(name)
            else:
                group = "" if group == "core" else group
                for res in pending:
                    for verb in cells[1].split(","):
                        out.add((group, res, verb.strip()))
                pending = []
        check(not pending, f"README RBAC row without an API group: {row}")
    return out


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def check_rules_commented(raw):
    """Every RBAC rule in the rendered text has a comment line right above it."""
    for path, text in raw.items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\s*- apiGroups:", line):
                check(i > 0 and lines[i - 1].strip().startswith("#"),
                      f"{path}: rule without a comment: {line.strip()} (line {i + 1})")


def check_deployment(docs, values):
    d = one(docs, "Deployment", RELEASE)
    if not d:
        return
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    psc, sc = pod["securityContext"], c["securityContext"]
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"pod securityContext {psc}")
    check(psc.get("seccompProfile") == {"type": "RuntimeDefault"}, "pod seccomp RuntimeDefault")
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532, f"container user {sc}")
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(sc.get("capabilities") == {"drop": ["ALL"]}, f"capabilities {sc.get('capabilities')}")
    check(sc.get("seccompProfile") == {"type": "RuntimeDefault"}, "container seccomp RuntimeDefault")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"health": 8080, "api": 8081}, f"container ports {ports}")
    check(c["livenessProbe"]["httpGet"] == {"path": "/live", "port": "health"}, "liveness /live")
    check(c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "health"}, "readiness /ready")
    check(c["args"] == ["controller"], "runs `serin controller`")
    check("limits" in c.get("resources", {}) and "requests" in c["resources"], "resources set")
    env = env_of(c)
    check(env["SERIN_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "SERIN_POD_NAME from fieldRef")
    check(env["SERIN_HEALTH_ADDR"] == "0.0.0.0:8080" and env["SERIN_API_ADDR"] == "0.0.0.0:8081", "addresses")
    check(env["SERIN_LEASE_NAMESPACE"] == NS, "lease in the release namespace")
    check(RELEASE in env["SERIN_LEASE_NAME"], f"lease name has the release name: {env['SERIN_LEASE_NAME']}")
    election = values.get("leaderElection", {})
    for var, key, default in (("SERIN_LEASE_DURATION", "leaseDuration", "15s"),
                              ("SERIN_LEASE_RENEW_DEADLINE", "renewDeadline", "10s"),
                              ("SERIN_LEASE_RETRY_PERIOD", "retryPeriod", "2s")):
        check(env.get(var) == election.get(key, default), f"{var} from leaderElection.{key}: {env.get(var)}")
    check(env["SERIN_DEFAULT_ROUTER"] == values.get("controller", {}).get("defaultRouter", "service"), "default router")
    # The bounds on a reconcile, as `serin controller` checks them at startup.
    ctl = values.get("controller", {})
    bounds = {var: env.get(var) for var in ("SERIN_CHECK_TIMEOUT", "SERIN_RECONCILE_DEADLINE",
              "SERIN_RECONCILE_CONCURRENCY", "SERIN_MAX_RECONCILES_PER_NAMESPACE",
              "SERIN_MAX_QUERIES_IN_FLIGHT", "SERIN_PROMETHEUS_MAX_BODY")}
    want = {"SERIN_CHECK_TIMEOUT": ctl.get("checkTimeout", "15s"),
            "SERIN_RECONCILE_DEADLINE": ctl.get("reconcileDeadline", "20s"),
            "SERIN_RECONCILE_CONCURRENCY": str(ctl.get("reconcileConcurrency", 16)),
            "SERIN_MAX_RECONCILES_PER_NAMESPACE": str(ctl.get("maxReconcilesPerNamespace", 4)),
            "SERIN_MAX_QUERIES_IN_FLIGHT": str(ctl.get("maxQueriesInFlight", 8)),
            "SERIN_PROMETHEUS_MAX_BODY": str(ctl.get("prometheusMaxBody", 1048576))}
    check(bounds == want, f"reconcile bounds {bounds}, expected {want}")
    secs = lambda d: sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u]
                         for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", d))
    check(secs(bounds["SERIN_CHECK_TIMEOUT"]) < secs(bounds["SERIN_RECONCILE_DEADLINE"]),
          f"checkTimeout {bounds['SERIN_CHECK_TIMEOUT']} must be less than reconcileDeadline {bounds['SERIN_RECONCILE_DEADLINE']}")
    # Every SERIN_ variable the chart sets is a flag of `serin controller`
    # (src/bin/serin/controller.rs) or a global one (src/bin/serin/main.rs).
    bin_dir = os.path.join(CHART, "..", "..", "src", "bin", "serin")
    flags = "".join(open(os.path.join(bin_dir, f)).read() for f in ("main.rs", "controller.rs"))
    known = set(re.findall(r'env = "(SERIN_[A-Z_]+)"', flags))
    for name in env:
        if name.startswith("SERIN_"):
            check(name in known, f"{name} is not a serin flag's env var")
    sharding = values.get("sharding", {})
    check(env.get("SERIN_NAMESPACE_SELECTOR") == (sharding.get("namespaceSelector") or None), "namespace selector env")
    check(env.get("SERIN_LABEL_SELECTOR") == (sharding.get("labelSelector") or None), "label selector env")
    allowed = values.get("controller", {}).get("allowedProviderUrls") or []
    check(env.get("SERIN_ALLOWED_PROVIDER_URLS") == (",".join(allowed) or None),
          f"allowed provider URLs env {env.get('SERIN_ALLOWED_PROVIDER_URLS')!r}")
    check(d["spec"]["replicas"] == values.get("replicas", 2), "replicas")
    secret = values.get("slack", {}).get("signingSecret", {}).get("secretName")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    if secret:
        check(mounts.get("slack-signing-secret", {}).get("readOnly") is True, "slack secret mounted read-only")
        vol = [v for v in pod["volumes"] if v["name"] == "slack-signing-secret"]
        check(vol and vol[0]["secret"]["secretName"] == secret, "slack secret volume")
        check(env.get("SERIN_SLACK_SIGNING_SECRET_FILE", "").startswith(mounts["slack-signing-secret"]["mountPath"]),
              "slack secret file under the mount")
        # The identity mapping: a ConfigMap in the release namespace, mounted read-only.
        check(mounts.get("slack-identities", {}).get("readOnly") is True, "slack identities mounted read-only")
        vol = [v for v in pod["volumes"] if v["name"] == "slack-identities"]
        cm = one(docs, "ConfigMap", f"{RELEASE}-slack-identities")
        check(vol and vol[0]["configMap"]["name"] == cm.get("metadata", {}).get("name"), "identities volume")
        check(cm.get("metadata", {}).get("namespace") == NS, "identities in the controller's namespace")
        mapped = yaml.safe_load(cm.get("data", {}).get("identities.yaml", "")) or {}
        check(mapped.get("users") == values.get("slack", {}).get("identities", []), f"identities rendered: {mapped}")
        check(env.get("SERIN_SLACK_IDENTITIES_FILE", "").startswith(mounts["slack-identities"]["mountPath"]),
              "identities file under the mount")
    else:
        check("slack-signing-secret" not in mounts and "SERIN_SLACK_SIGNING_SECRET_FILE" not in env, "no slack")
        check("SERIN_SLACK_IDENTITIES_FILE" not in env, "no slack identities")
    api = values.get("api", {})
    tls = api.get("tls", {}).get("secretName")
    if tls:
        check(mounts.get("api-tls", {}).get("readOnly") is True, "API TLS Secret mounted read-only")
        vol = [v for v in pod["volumes"] if v["name"] == "api-tls"]
        check(vol and vol[0]["secret"]["secretName"] == tls, "API TLS volume")
        check(env.get("SERIN_API_TLS_CERT") == mounts["api-tls"]["mountPath"] + "/tls.crt"
              and env.get("SERIN_API_TLS_KEY") == mounts["api-tls"]["mountPath"] + "/tls.key", "tls.crt / tls.key")
        check("SERIN_API_INSECURE_HTTP" not in env, "TLS, not plain HTTP")
    else:
        check(env.get("SERIN_API_INSECURE_HTTP") == "true" and "api-tls" not in mounts, "plain HTTP only when asked")
    check(env.get("SERIN_API_AUDIENCE") == ",".join(api.get("audiences", ["serin"])), "API audience")
    svc = one(docs, "Service", RELEASE)
    sp = {p["name"]: (p["port"], p["targetPort"]) for p in svc.get("spec", {}).get("ports", [])}
    check(sp == {"health": (8080, "health"), "api": (8081, "api")}, f"service ports {sp}")
    check(svc.get("spec", {}).get("selector") == d["spec"]["selector"]["matchLabels"], "service selects the pods")


def scenario_default(chart):
    values = MINIMAL
    docs, raw = render(chart, values)
    check_deployment(docs, values)
    check_rules_commented(raw)
    kinds = sorted({d["kind"] for d in docs})
    check(kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget",
                    "Role", "RoleBinding", "Service", "ServiceAccount"], f"default kinds {kinds}")
    cr = one(docs, "ClusterRole", RELEASE)
    check(grants(cr.get("rules")) == WORKLOAD | CLUSTER,
          f"default ClusterRole: extra {grants(cr.get('rules')) - (WORKLOAD | CLUSTER)}, "
          f"missing {(WORKLOAD | CLUSTER) - grants(cr.get('rules'))}")
    lease = one(docs, "Role", f"{RELEASE}-leader-election")
    check(lease.get("metadata", {}).get("namespace") == NS, "lease Role in the release namespace")
    check(grants(lease.get("rules")) == LEASE, f"lease Role rules {lease.get('rules')}")
    check(not [d for d in docs if d["kind"] == "ClusterRole" and "leases" in json.dumps(d)],
          "no cluster-wide lease permission")
    # The README's table is the documentation of these rules: nothing more, nothing less.
    documented = readme_rbac()
    everything = WORKLOAD | CLUSTER | NAMESPACES | LEASE | set().union(*ROUTERS.values())
    check(documented == everything,
          f"README RBAC table: extra {sorted(documented - everything)}, missing {sorted(everything - documented)}")
    pdb = one(docs, "PodDisruptionBudget")
    check(pdb.get("spec", {}).get("minAvailable") == 1, "PDB minAvailable 1")
    # The user-facing roles are ClusterRoles named -viewer / -approver / -releaser.
    names = {d["metadata"]["name"] for d in of_kind(docs, "ClusterRole")}
    check({f"{RELEASE}-viewer", f"{RELEASE}-approver", f"{RELEASE}-releaser",
           f"{RELEASE}-emergency-override"} <= names,
          f"user roles {names}")
    approver = grants(one(docs, "ClusterRole", f"{RELEASE}-approver").get("rules"))
    want = {("serin.dev", "canaries", v) for v in ("get", "list", "watch")} | {
        ("serin.dev", f"canaries/{a}", "create") for a in ("approve", "abort", "retry", "pause")}
    check(approver == want, f"approver: only read and the virtual subresources: {approver ^ want}")
    check(not [g for g in approver if g[1] == "canaries/status" or g[2] in ("patch", "update")],
          "approver cannot write the Canary or its status")
    releaser = grants(one(docs, "ClusterRole", f"{RELEASE}-releaser").get("rules"))
    check(releaser == {("serin.dev", "canaries/release", "create")},
          f"releaser: only create on canaries/release: {releaser}")
    override = grants(one(docs, "ClusterRole", f"{RELEASE}-emergency-override").get("rules"))
    check(override == {("serin.dev", "canaries/override", "create")},
          f"emergency-override: only create on canaries/override: {override}")
    sa = one(docs, "ServiceAccount")
    for b in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NS}],
              f"{b['kind']} {b['metadata']['name']} binds the ServiceAccount")
    return docs


def scenario_full(chart):
    values = load_values("ci/full-values.yaml")
    docs, raw = render(chart, values)
    check_deployment(docs, values)
    check_rules_commented(raw)
    kinds = {d["kind"] for d in docs}
    check({"NetworkPolicy", "ServiceMonitor", "ConfigMap", "PodDisruptionBudget"} <= kinds, f"full kinds {kinds}")
    want = WORKLOAD | CLUSTER | NAMESPACES | set().union(*ROUTERS.values())
    got = grants(one(docs, "ClusterRole", RELEASE).get("rules"))
    check(got == want, f"full ClusterRole: extra {got - want}, missing {want - got}")
    # serin patches only with server-side apply, and an apply that creates the object is
    # authorized as create too: patch without create is a 403 on a real API server.
    # (A subresource such as canaries/status is never created by a patch.)
    no_create = sorted((g, r) for g, r, v in got if v == "patch" and "/" not in r and (g, r, "create") not in got)
    check(not no_create, f"patch without create (server-side apply creates): {no_create}")
    sm = one(docs, "ServiceMonitor")
    ep = sm.get("spec", {}).get("endpoints", [{}])[0]
    check(sm.get("apiVersion") == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    check(ep.get("port") == "health" and ep.get("path") == "/metrics", f"ServiceMonitor endpoint {ep}")
    check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "ServiceMonitor labels")
    check(sm.get("spec", {}).get("selector", {}).get("matchLabels")
          == one(docs, "Deployment")["spec"]["selector"]["matchLabels"], "ServiceMonitor selects the Service")
    np = one(docs, "NetworkPolicy")
    spec = np.get("spec", {})
    check(spec.get("policyTypes") == ["Ingress", "Egress"], "NetworkPolicy types")
    in_ports = sorted(p["port"] for r in spec.get("ingress", []) for p in r["ports"])
    check(in_ports == ["api", "health"], f"ingress only to api + health: {in_ports}")
    check(all(r.get("from") for r in spec.get("ingress", [])), "ingress peers set from values")
    eg = json.dumps(spec.get("egress"))
    for needle in ('"port": 53', '"cidr": "10.96.0.1/32"', '"port": 9090', '"port": 6443'):
        check(needle in eg, f"egress has {needle}")
    cm = one(docs, "ConfigMap", f"{RELEASE}-dashboard")
    check(cm["metadata"]["namespace"] == "monitoring" and cm["metadata"]["labels"].get("grafana_dashboard") == "1",
          "dashboard ConfigMap labelled, in the chosen namespace")
    check(json.loads(cm["data"]["serin.json"])["uid"] == "serin-overview", "dashboard JSON in the ConfigMap")
    check(one(docs, "PodDisruptionBudget").get("spec", {}).get("minAvailable") == 1, "PDB with 3 replicas")
    return docs


def scenario_namespaced(chart):
    """controller.watchNamespace: namespaced rules move to a Role there."""
    values = {"controller": {"watchNamespace": "shop"}, "routers": {"gatewayApi": {"enabled": True}}, **MINIMAL}
    docs, raw = render(chart, values)
    check_rules_commented(raw)
    env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    check(env.get("SERIN_NAMESPACE") == "shop", "SERIN_NAMESPACE")
    cr = grants(one(docs, "ClusterRole", RELEASE).get("rules"))
    check(cr == CLUSTER, f"namespaced mode ClusterRole holds only cluster-wide needs: {cr ^ CLUSTER}")
    role = one(docs, "Role", RELEASE)
    check(role.get("metadata", {}).get("namespace") == "shop", "Role in the watched namespace")
    want = WORKLOAD | ROUTERS["gatewayApi"]
    check(grants(role.get("rules")) == want, f"namespaced Role: {grants(role.get('rules')) ^ want}")
    rb = one(docs, "RoleBinding", RELEASE)
    check(rb.get("metadata", {}).get("namespace") == "shop" and rb["roleRef"]["kind"] == "Role", "RoleBinding in shop")
    own = one(docs, "Role", f"{RELEASE}-own-secrets")
    check(own.get("metadata", {}).get("namespace") == NS and grants(own.get("rules")) == {("", "secrets", "get")},
          "controller-namespace Secrets readable (ClusterNotifier, ClusterAnalysisTemplate)")
    # Watching its own namespace: no extra Role for its Secrets.
    docs2, _ = render(chart, {"controller": {"watchNamespace": NS}, **MINIMAL})
    check(not [d for d in docs2 if d["metadata"]["name"].endswith("-own-secrets")], "no own-secrets Role in own ns")
    return docs


def scenario_single(chart):
    """One replica without leader election: no PDB, no lease Role, no user roles."""
    values = {"replicas": 1, "leaderElection": {"enabled": False}, "rbac": {"userRoles": False},
              "api": {"insecureHttp": True}}
    docs, _ = render(chart, values, name="shard-b")
    env0 = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    check(env0.get("SERIN_API_INSECURE_HTTP") == "true" and "SERIN_API_TLS_CERT" not in env0,
          "plain HTTP when asked for")
    kinds = {d["kind"] for d in docs}
    check("PodDisruptionBudget" not in kinds, "no PDB with one replica")
    check(not [d for d in docs if "leases" in json.dumps(d.get("rules", []))], "no lease Role without election")
    check({d["metadata"]["name"] for d in of_kind(docs, "ClusterRole")} == {"shard-b-serin"}, "only the controller's ClusterRole")
    env = env_of(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    check(env["SERIN_LEADER_ELECTION"] == "false", "leader election off")
    check(env["SERIN_LEASE_NAME"] == "shard-b-serin-leader", f"per-release lease name {env['SERIN_LEASE_NAME']}")
    for kind in ("NetworkPolicy", "ServiceMonitor", "ConfigMap"):
        check(kind not in kinds, f"{kind} only when enabled")
    return docs


def scenario_rejected(chart):
    """values.schema.json and the templates refuse bad values."""
    bad_dir = os.path.join(CHART, "tests", "bad-values")
    for name in sorted(os.listdir(bad_dir)):
        values = load_values(os.path.join("tests", "bad-values", name))
        try:
            chart.validate_schema(values)
            check(False, f"values.schema.json accepted tests/bad-values/{name}")
        except helm.HelmError:
            pass
    # Without TLS for the API (and without explicitly asking for plain HTTP): no render.
    for values, needle in (({}, "api.tls.secretName"),
                           ({"api": {"tls": {"secretName": "x"}, "insecureHttp": True}}, "exclude")):
        try:
            chart.render(values, name=RELEASE, namespace=NS)
            check(False, f"rendered with {values}")
        except helm.HelmError as e:
            check(needle in str(e), f"unhelpful error: {e}")
    # A namespace's share larger than the slots there are fails the render, named.
    try:
        chart.render({"controller": {"maxReconcilesPerNamespace": 17}, **MINIMAL}, name=RELEASE, namespace=NS)
        check(False, "maxReconcilesPerNamespace 17 of 16 rendered")
    except helm.HelmError as e:
        check("reconcileConcurrency 16" in str(e), f"unhelpful error: {e}")
    # A default router whose RBAC is not granted fails the render, with the key named.
    try:
        chart.render({"controller": {"defaultRouter": "smi"}, **MINIMAL}, name=RELEASE, namespace=NS)
        check(False, "defaultRouter smi without routers.smi.enabled rendered")
    except helm.HelmError as e:
        check("routers" in str(e), f"unhelpful error: {e}")


def scenarios_per_router(chart):
    """One render per key under `routers:` in values.yaml, only that router enabled, as
    scenario "router:<key>"; tests/helm_chart.rs holds each one's extra rules to the
    kinds src/traffic/registry.rs says that router writes."""
    out = {}
    for key in load_values("values.yaml").get("routers", {}):
        docs, raw = render(chart, {"routers": {key: {"enabled": True}}, **MINIMAL})
        check_rules_commented(raw)
        got = grants(one(docs, "ClusterRole", RELEASE).get("rules"))
        check(got == WORKLOAD | CLUSTER | ROUTERS.get(key, set()),
              f"routers.{key} alone: {got ^ (WORKLOAD | CLUSTER | ROUTERS.get(key, set()))}")
        out[f"router:{key}"] = docs
        out[f"notes:router:{key}"] = next(t for p, t in raw.items() if p.endswith("NOTES.txt"))
    return out


def main():
    emit = sys.argv[sys.argv.index("--emit") + 1] if "--emit" in sys.argv else None
    started = time.monotonic()
    print(f"helm-python-sdk {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}")
    for label, values in (("minimal", MINIMAL), ("full", load_values("ci/full-values.yaml"))):
        report = helm.lint(CHART, values, strict=True, namespace=NS)
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        check(not problems and not report.get("errors"),
              f"helm lint --strict ({label} values): {problems} {report.get('errors')}")
    rendered = {}
    with helm.Chart.load(CHART) as chart:
        check(chart.metadata.get("apiVersion") == "v2" and chart.version == "0.1.0", "Chart.yaml")
        check(len(chart.crds) == 1, "crds/crds.yaml is in the chart")
        for name, fn in [("default", scenario_default), ("full", scenario_full),
                         ("namespaced", scenario_namespaced), ("single", scenario_single),
                         ("rejected", scenario_rejected)]:
            before = len(FAILURES)
            docs = fn(chart)
            if docs is not None:
                rendered[name] = [{k: v for k, v in d.items() if k != "__template"} for d in docs]
            print(f"{name}: {'ok' if len(FAILURES) == before else 'FAILED'}")
        before = len(FAILURES)
        for name, docs in scenarios_per_router(chart).items():
            rendered[name] = docs if name.startswith("notes:") else \
                [{k: v for k, v in d.items() if k != "__template"} for d in docs]
        print(f"each router alone: {'ok' if len(FAILURES) == before else 'FAILED'}")
    dash = json.load(open(os.path.join(CHART, "dashboards", "serin.json")))
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in ("serin_info", "serin_canaries", "serin_canary_weight", "serin_metric_verdicts_total",
                   "serin_metric_value", "serin_judge_duration_seconds", "serin_metric_query_duration_seconds",
                   "serin_metric_query_errors_total", "serin_reconcile_duration_seconds",
                   "serin_reconcile_errors_total", "serin_webhook_deliveries_total",
                   "serin_notification_deliveries_total", "serin_releases_total", "serin_leader"):
        check(re.search(rf"\b{metric}(_bucket|_count)?\b", exprs), f"dashboard has no panel for {metric}")
    if emit:
        with open(emit, "w") as f:
            json.dump(rendered, f)
    for f in FAILURES:
        print(f"FAIL: {f}")
    print(f"chart: {len(FAILURES)} failed checks in {time.monotonic() - started:.1f}s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
