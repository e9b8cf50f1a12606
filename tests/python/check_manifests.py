"""Checks the Kubernetes manifests under deploy/k8s (run by tests/operations.rs).

1. Every resource validates against Kubernetes' own schemas (kubernetes-validate,
   strict: unknown fields are errors). KEDA's ScaledObjects have no schema there; they
   are checked by 2.
2. Every worker Deployment runs one stage, probes /healthz and /readyz on its metrics
   port, joins its group under its pod's name (static membership), and has a
   ScaledObject that scales it on its own consumer group's lag, on topics it reads, up to
   at most the partition count; and one ScaledObject also scales on the dossiers at risk
   of missing their deadline (the track stage's gauge, named by the caller).
3. deploy/compose.yaml runs every stage (after its topics exist) and the simulators of
   the outside world.

Usage: check_manifests.py DIR STAGES_JSON PARTITIONS AT_RISK_METRIC
  STAGES_JSON: {"intake": ["dossier.submitted", ...], ...} (the stage table's inputs)
  AT_RISK_METRIC: the gauge of dossiers at risk (motcua_track::telemetry)
"""

import json
import pathlib
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def main():
    folder, stages, partitions = pathlib.Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    at_risk_metric = sys.argv[4]
    at_risk_scaled = []
    resources = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                resources.append((path.name, doc))
    validated = 0
    for name, doc in resources:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        validated += 1
    deployments = {d["metadata"]["name"]: d for _, d in resources if d["kind"] == "Deployment"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for _, d in resources if d["kind"] == "ScaledObject"}
    for stage, inputs in stages.items():
        name = f"motcua-{stage}"
        if name not in deployments:
            fail(f"no Deployment {name}")
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        if c["args"][:2] != ["run", stage]:
            fail(f"{name} runs {c['args']}")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            got = c.get(probe, {}).get("httpGet", {})
            if (got.get("path"), got.get("port")) != (path, "metrics"):
                fail(f"{name} {probe} is {got}")
        env = {e["name"]: e for e in c.get("env", [])}
        if env.get("MOTCUA_RUNTIME__STATIC_MEMBERSHIP", {}).get("value") != "true":
            fail(f"{name} does not use static membership")
        if env.get("MOTCUA_RUNTIME__INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            fail(f"{name} does not take its instance id from the pod's name")
        if name not in scaled:
            fail(f"no ScaledObject scales {name}")
        spec = scaled[name]["spec"]
        if not 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions:
            fail(f"{name} scales {spec['minReplicaCount']}..{spec['maxReplicaCount']} with {partitions} partitions")
        for t in spec["triggers"]:
            m = t["metadata"]
            if t["type"] == "prometheus":
                if at_risk_metric not in m["query"] or not m["serverAddress"].startswith("http"):
                    fail(f"{name} scales on the query {m['query']!r} at {m['serverAddress']!r}")
                int(m["threshold"])
                at_risk_scaled.append(name)
                continue
            if t["type"] != "kafka" or m["consumerGroup"] != name:
                fail(f"{name} scales on {t['type']} group {m.get('consumerGroup')}")
            if "topic" in m and m["topic"] not in inputs:
                fail(f"{name} scales on {m['topic']}, which it does not read ({inputs})")
            int(m["lagThreshold"])
    if not at_risk_scaled:
        fail(f"no ScaledObject scales on {at_risk_metric}")
    compose = yaml.safe_load((folder.parent / "compose.yaml").read_text())["services"]
    for stage in stages:
        svc = compose.get(stage)
        if not svc or svc.get("command", [])[:2] != ["run", stage]:
            fail(f"compose.yaml runs no {stage} worker")
        if svc.get("depends_on", {}).get("topics", {}).get("condition") != "service_completed_successfully":
            fail(f"compose.yaml starts {stage} before its topics exist")
    for sim, command in (("registries", "registry-sim"), ("gateway", "gateway-sim"), ("backoffice", "backoffice-sim"),
                         ("wallet", "wallet-sim"), ("portal", "portal-sim")):
        if compose.get(sim, {}).get("command", [None])[0] != command:
            fail(f"compose.yaml has no {sim} simulator ({command})")
    print(
        f"OK {validated} resources valid for Kubernetes {K8S_VERSION}; {len(stages)} stages probed and scaled on their lag, "
        f"{', '.join(at_risk_scaled)} also on {at_risk_metric}; "
        f"compose runs every stage and the simulators"
    )


if __name__ == "__main__":
    main()
