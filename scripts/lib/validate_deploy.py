"""Checks the deploy kit under deploy/ without a cluster, a Docker engine or systemd running.

Run by scripts/validate-deploy, which installs what this needs (PyYAML, jsonschema and
kubernetes-validate, whose Kubernetes API schemas ship inside the package, so nothing is
fetched while validating). Each check prints one line; the exit code is 1 if any failed.

What is checked, and why:
- Kubernetes manifests against the Kubernetes API schemas (strict: an unknown or misspelt
  field is an error), for the oldest and the newest Kubernetes version the kit supports; the
  KEDA ScaledObject against a schema of the fields the kit uses (KEDA's own CRD is not
  available offline); the kustomization's resource list against the files; and, where kubectl
  is installed, the rendered kustomization again.
- The kit's own invariants, which no schema knows: probes on /healthz and /readyz, static
  membership from the pod name, maxReplicaCount = the partition count, the ScaledObject's
  group and brokers = the configuration's, selectors that select something, requests and
  limits everywhere, non-root pods, the keyspace created with tablets disabled.
- The configuration files (ConfigMap, compose) through the questline binary itself when one
  is given (QUESTLINE_BIN), so an unknown or misspelt key fails here rather than at start.
- The compose file: it parses, every long-running service has a healthcheck, a restart
  policy and limits, the worker waits for the service that creates its input topics; its HTTP probe is run against a local server answering 200 and 503.
- The systemd units with `systemd-analyze verify` (any warning fails) and their hardening.
- The Dockerfile and .dockerignore: non-root user, slim run stage, nothing but the binary,
  catalog, mappings and schemas copied into it; target/, .git and local data ignored.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
SYSTEMD = DEPLOY / "systemd"

# The oldest Kubernetes the manifests are written for (the sidecar's preStop `sleep` action
# is on by default from 1.30) and the newest whose schemas the validator ships.
K8S_OLDEST = "1.30.0"

# The ScaledObject fields the kit uses, with KEDA's types (keda.sh/v1alpha1). Trigger
# metadata values must be strings: KEDA rejects numbers and booleans there.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "properties": {
                        "failureThreshold": {"type": "integer"},
                        "replicas": {"type": "integer"},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "scaleUp": {"$ref": "#/$defs/rules"},
                                        "scaleDown": {"$ref": "#/$defs/rules"},
                                    },
                                },
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "$defs": {
        "rules": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
                "policies": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "value", "periodSeconds"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["Pods", "Percent"]},
                            "value": {"type": "integer", "minimum": 1},
                            "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                        },
                    },
                },
            },
        }
    },
}

# The Kafka scaler's metadata keys the kit may use (KEDA's apache-kafka scaler).
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "partitionLimitation", "version",
    "sasl", "tls", "unsafeSsl",
}


class Checks:
    """Runs named checks, prints one line each, remembers failures."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, problems: Iterable[str]) -> None:
        problems = list(problems)
        if problems:
            self.failed.append(name)
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
        else:
            self.passed += 1
            print(f"ok   {name}")

    def note(self, text: str) -> None:
        print(f"skip {text}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_yaml_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---- Kubernetes --------------------------------------------------------------------------


def schema_problems(doc: dict, versions: list[str]) -> list[str]:
    """Validates one object: built-in kinds against the Kubernetes schemas, KEDA's
    ScaledObject against SCALED_OBJECT_SCHEMA; an unknown kind is a problem too, so that
    nothing in the kit goes unvalidated."""
    kind, api = doc.get("kind"), doc.get("apiVersion")
    where = f"{kind}/{(doc.get('metadata') or {}).get('name')}"
    if api == "keda.sh/v1alpha1" and kind == "ScaledObject":
        validator = jsonschema.Draft202012Validator(SCALED_OBJECT_SCHEMA)
        out = [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
               for e in validator.iter_errors(doc)]
        for trigger in (doc.get("spec") or {}).get("triggers") or []:
            if trigger.get("type") == "kafka":
                unknown = set(trigger.get("metadata") or {}) - KAFKA_TRIGGER_KEYS
                out += [f"{where}: unknown kafka trigger metadata key {k!r}" for k in sorted(unknown)]
        return out
    out = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            return [f"{where}: no schema for {api} {kind}: the validator cannot check it"]
        except kv.ValidationError as e:
            path = ".".join(map(str, e.path))
            out.append(f"{where} (Kubernetes {kv.major_minor(version)}): {path}: {e.message}")
    return out


def kustomization_problems(kustomization: dict, manifests: list[Path]) -> list[str]:
    out = []
    listed = kustomization.get("resources") or []
    for name in listed:
        if not (KUBE / name).is_file():
            out.append(f"resources: {name} does not exist")
    for path in manifests:
        if path.name not in listed and not path.name.endswith(".example.yaml"):
            out.append(f"{path.name} is not listed in resources (name it *.example.yaml if on purpose)")
    return out


def containers(doc: dict) -> list[tuple[str, dict]]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return [("initContainer", c) for c in spec.get("initContainers") or []] + [
        ("container", c) for c in spec.get("containers") or []
    ]


def pod_spec(doc: dict) -> dict | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    if doc.get("kind") == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def pod_labels(doc: dict) -> dict:
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def workload_problems(doc: dict) -> list[str]:
    """Every pod: non-root, no privilege escalation, capabilities dropped, requests and
    limits; long-running containers: liveness on /healthz and readiness on /readyz, on a port
    the container declares."""
    out: list[str] = []
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = pod_spec(doc) or {}
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        out.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        out.append(f"{where}: pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        out.append(f"{where}: automountServiceAccountToken is not false (questline needs no API access)")
    for role, c in containers(doc):
        name = f"{where} {role} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation is not false")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            out.append(f"{name}: capabilities.drop is not [ALL]")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem is not true")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    out.append(f"{name}: no resources.{kind}.{r}")
        if doc["kind"] in ("Deployment", "StatefulSet") and role == "container":
            ports = {p.get("name") for p in c.get("ports") or []} | {
                p.get("containerPort") for p in c.get("ports") or []
            }
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                                ("startupProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    out.append(f"{name}: {probe} is not an httpGet of {path}")
                elif get.get("port") not in ports:
                    out.append(f"{name}: {probe} port {get.get('port')!r} is not a declared port")
    return out


def kit_problems(docs: list[dict]) -> list[str]:
    """The invariants that tie the kit's objects together."""
    out: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind: str, name: str) -> dict | None:
        found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name]
        if not found:
            out.append(f"no {kind} named {name}")
            return None
        return found[0]

    config_map = one("ConfigMap", "questline-config")
    worker = one("StatefulSet", "questline-worker")
    scaled = one("ScaledObject", "questline-worker")
    job = one("Job", "questline-migrate")
    settings: dict = {}
    if config_map:
        text = (config_map.get("data") or {}).get("questline.toml")
        if text is None:
            out.append("ConfigMap questline-config has no questline.toml")
        else:
            try:
                settings = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                out.append(f"ConfigMap questline.toml: {e}")
    out += settings_problems("ConfigMap questline.toml", settings)
    kafka = settings.get("kafka") or {}
    scylla = (settings.get("store") or {}).get("scylla") or {}

    if worker:
        if "replicas" in (worker.get("spec") or {}) and scaled:
            out.append("StatefulSet questline-worker sets replicas while the ScaledObject owns them")
        env = {e["name"]: e for c in (pod_spec(worker) or {}).get("containers") or []
               for e in c.get("env") or []}
        gid = env.get("QUESTLINE_KAFKA_PROPERTY_GROUP_INSTANCE_ID") or {}
        if ((gid.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") != "metadata.name":
            out.append("worker: QUESTLINE_KAFKA_PROPERTY_GROUP_INSTANCE_ID is not the pod name (downward API metadata.name)")
        grace = (pod_spec(worker) or {}).get("terminationGracePeriodSeconds", 30)
        if grace < 60:
            out.append(f"worker: terminationGracePeriodSeconds {grace} < 60 leaves too little for the last batch")
        if worker["spec"].get("serviceName") not in [s["metadata"]["name"] for s in by_kind.get("Service", [])]:
            out.append("worker: serviceName names no Service of the kit")

    if scaled:
        spec = scaled.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if worker and (target.get("kind"), target.get("name")) != ("StatefulSet", worker["metadata"]["name"]):
            out.append("ScaledObject does not target the worker StatefulSet")
        if kafka.get("partitions") is None:
            out.append("questline.toml sets no kafka.partitions: the ScaledObject's maxReplicaCount has nothing to match")
        elif spec.get("maxReplicaCount") != kafka.get("partitions"):
            out.append(f"ScaledObject maxReplicaCount {spec.get('maxReplicaCount')} != kafka.partitions "
                       f"{kafka.get('partitions')}: more workers than partitions would idle")
        if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 0):
            out.append("ScaledObject minReplicaCount > maxReplicaCount")
        for t in spec.get("triggers") or []:
            if t.get("type") != "kafka":
                out.append(f"ScaledObject trigger {t.get('type')!r} is not the Kafka lag trigger")
                continue
            meta = t.get("metadata") or {}
            if meta.get("consumerGroup") != kafka.get("group_id"):
                out.append(f"ScaledObject consumerGroup {meta.get('consumerGroup')!r} != kafka.group_id {kafka.get('group_id')!r}")
            if meta.get("bootstrapServers") != kafka.get("brokers"):
                out.append(f"ScaledObject bootstrapServers {meta.get('bootstrapServers')!r} != kafka.brokers {kafka.get('brokers')!r}")
            if meta.get("allowIdleConsumers", "false") != "false":
                out.append("ScaledObject allowIdleConsumers must stay false")

    if job:
        cql = " ".join(" ".join(c.get("command") or []) for c in (pod_spec(job) or {}).get("initContainers") or [])
        out += keyspace_cql_problems("migrate Job", cql, scylla)

    workloads = [d for k in ("Deployment", "StatefulSet", "Job") for d in by_kind.get(k, [])]
    for kind in ("Service", "PodDisruptionBudget"):
        for d in by_kind.get(kind, []):
            spec = d.get("spec") or {}
            selector = spec.get("selector") or {}
            if kind == "PodDisruptionBudget":
                selector = selector.get("matchLabels") or {}
            if not any(selects(selector, pod_labels(w)) for w in workloads if w["kind"] != "Job"):
                out.append(f"{kind}/{d['metadata']['name']}: its selector selects no pod of the kit")
    for d in workloads:
        selector = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if selector is not None and not selects(selector, pod_labels(d)):
            out.append(f"{d['kind']}/{d['metadata']['name']}: selector does not match its own pod labels")
    return out


def settings_problems(where: str, settings: dict) -> list[str]:
    """What a container deployment needs of questline.toml."""
    out = []
    listen = (settings.get("http") or {}).get("listen", "127.0.0.1:8080")
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        out.append(f"{where}: http.listen {listen} is loopback: probes from outside the container cannot reach it")
    if (settings.get("store") or {}).get("kind") != "scylla":
        out.append(f"{where}: store.kind is not scylla: the embedded store cannot be shared by a group of workers or a separate sidecar")
    return out


def keyspace_cql_problems(where: str, cql: str, scylla: dict) -> list[str]:
    """The keyspace statement of the kit: the configured keyspace and replication, with
    tablets disabled (lightweight transactions, used to claim partitions, are unsupported
    in ScyllaDB 6 tablets keyspaces)."""
    out = []
    flat = " ".join(cql.split())
    keyspace = scylla.get("keyspace", "questline")
    if not re.search(rf"CREATE KEYSPACE IF NOT EXISTS {re.escape(keyspace)}\b", flat):
        out.append(f"{where}: does not create keyspace {keyspace!r} (IF NOT EXISTS)")
    if "tablets = {'enabled': false}" not in flat:
        out.append(f"{where}: the keyspace is not created with tablets = {{'enabled': false}}")
    rf = scylla.get("replication_factor", 1)
    if f"'replication_factor': {rf}" not in flat:
        out.append(f"{where}: replication_factor differs from store.scylla.replication_factor = {rf}")
    return out


# ---- configuration through the binary ----------------------------------------------------


def binary_config_problems(binary: str, where: str, text: str) -> list[str]:
    """Loads a configuration file with questline itself: `replay --records --config FILE`
    reads the settings (unknown keys are errors), the catalog and the mappings they name,
    then replays an empty input."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLINE_")}
        proc = subprocess.run(
            [binary, "replay", "--records", "--config", path, "--input", os.devnull],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        return [f"{where}: questline rejects it (exit {proc.returncode}): {proc.stderr.strip()}"]
    return []


# ---- compose -----------------------------------------------------------------------------


def compose_problems(compose: dict) -> tuple[list[str], str, str]:
    """Returns the problems, the questline TOML and the probe command of the compose file."""
    out = []
    services = compose.get("services") or {}
    for name in ("kafka", "topics", "scylla", "keyspace", "migrate", "worker", "sidecar"):
        if name not in services:
            out.append(f"no service {name!r}")
    for name, svc in services.items():
        one_shot = name in ("topics", "keyspace", "migrate")
        if not svc.get("restart"):
            out.append(f"{name}: no restart policy")
        if not one_shot and not svc.get("healthcheck"):
            out.append(f"{name}: no healthcheck")
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if "memory" not in limits:
            out.append(f"{name}: no memory limit (deploy.resources.limits.memory)")
        if "build" in svc:
            build = svc["build"]
            context = (COMPOSE.parent / build.get("context", ".")).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                out.append(f"{name}: build.dockerfile {build.get('dockerfile')} not found in {context}")
            if build.get("dockerfile_inline"):
                out.append(f"{name}: inline Dockerfile: use deploy/Dockerfile")
    for name in ("worker", "sidecar"):
        svc = services.get(name) or {}
        deps = svc.get("depends_on") or {}
        if (deps.get("migrate") or {}).get("condition") != "service_completed_successfully":
            out.append(f"{name}: does not wait for migrate to complete")
    # The worker never creates input topics: without them it would wait, never ready.
    if (((services.get("worker") or {}).get("depends_on") or {}).get("topics") or {}).get(
            "condition") != "service_completed_successfully":
        out.append("worker: does not wait for the topics service (its input topics)")
    if (((services.get("migrate") or {}).get("depends_on") or {}).get("keyspace") or {}).get(
            "condition") != "service_completed_successfully":
        out.append("migrate: does not wait for the keyspace service")
    text = (((compose.get("configs") or {}).get("questline")) or {}).get("content", "")
    settings: dict = {}
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        out.append(f"configs.questline: {e}")
    out += settings_problems("compose questline.toml", settings)
    keyspace = services.get("keyspace") or {}
    cql = " ".join(keyspace.get("entrypoint") or []) + " " + " ".join(
        keyspace.get("command") if isinstance(keyspace.get("command"), list) else [keyspace.get("command") or ""])
    out += keyspace_cql_problems("compose keyspace service", cql,
                                 (settings.get("store") or {}).get("scylla") or {})
    probe = ""
    worker_check = (services.get("worker") or {}).get("healthcheck") or {}
    test = worker_check.get("test") or []
    if test[:3] == ["CMD", "bash", "-c"] and len(test) == 4:
        probe = test[3]
    else:
        out.append("worker healthcheck is not [CMD, bash, -c, SCRIPT]")
    for name in ("worker", "sidecar"):
        check = (services.get(name) or {}).get("healthcheck") or {}
        script = " ".join(check.get("test") or [])
        for path in ("/healthz", "/readyz"):
            if path not in script:
                out.append(f"{name}: healthcheck does not ask {path}")
    return out, text, probe


class _Probed(http.server.BaseHTTPRequestHandler):
    status: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = self.status.get(self.path, 404)
        try:
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'{"status":"x"}')
        except OSError:  # the probe closes after the status line
            pass

    def log_message(self, *args: Any) -> None:
        pass


def probe_problems(probe: str) -> list[str]:
    """Runs the compose probe (bash, /dev/tcp) against a local HTTP server: it must pass when
    /healthz and /readyz answer 200 and fail when /readyz answers 503 or nothing listens."""
    if not probe:
        return ["no probe script"]
    if "/dev/tcp/127.0.0.1/8080" not in probe:
        return ["the probe does not connect to 127.0.0.1:8080"]
    # Compose turns $$ into $; the port is made a free one for this test.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probed)
    port = server.server_address[1]
    script = probe.replace("$$", "$").replace("/dev/tcp/127.0.0.1/8080", f"/dev/tcp/127.0.0.1/{port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = []

    def run() -> int:
        return subprocess.run(["bash", "-c", script], capture_output=True, timeout=20).returncode

    try:
        _Probed.status = {"/healthz": 200, "/readyz": 200}
        if run() != 0:
            out.append("the probe fails although /healthz and /readyz answer 200")
        _Probed.status = {"/healthz": 200, "/readyz": 503}
        if run() == 0:
            out.append("the probe passes although /readyz answers 503")
        _Probed.status = {"/healthz": 500, "/readyz": 200}
        if run() == 0:
            out.append("the probe passes although /healthz answers 500")
    finally:
        server.shutdown()
        server.server_close()
    # Nothing listening any more on that port.
    if run() == 0:
        out.append("the probe passes with nothing listening")
    return out


# ---- systemd -----------------------------------------------------------------------------

REQUIRED_UNIT_SETTINGS = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "Restart": "on-failure",
    "DynamicUser": "yes",
}


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def seconds(value: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|min|h)?", value):
        total += float(number) * {"ms": 0.001, "s": 1, "": 1, "min": 60, "h": 3600}[unit]
    return total


def unit_problems(path: Path) -> list[str]:
    s = unit_settings(path.read_text())
    out = [f"{k}={v} missing" for k, v in REQUIRED_UNIT_SETTINGS.items() if v not in s.get(k, [])]
    if not any(v.startswith("-/etc/questline/") for v in s.get("EnvironmentFile", [])):
        out.append("no EnvironmentFile=-/etc/questline/... for secrets")
    stop = seconds((s.get("TimeoutStopSec") or ["0"])[-1])
    need = 60 if "worker" in path.name else 20
    if stop < need:
        out.append(f"TimeoutStopSec {stop:g} s < {need} s: too short for the graceful stop")
    if "2" not in " ".join(s.get("RestartPreventExitStatus", [])).split():
        out.append("RestartPreventExitStatus=2 missing (a configuration error must not loop)")
    return out


def systemd_verify_problems(units: list[Path], binary: str | None) -> list[str] | None:
    """`systemd-analyze verify` on copies whose ExecStart names a binary present here (the
    units name /usr/local/bin/questline, which verify requires to exist). Every line it
    prints is a problem: it exits 0 on unknown keys. None when systemd-analyze is absent."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    stand_in = binary or shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for unit in units:
            copy = Path(tmp) / unit.name
            copy.write_text(unit.read_text().replace("/usr/local/bin/questline", stand_in))
            copies.append(str(copy))
        proc = subprocess.run([tool, "verify", *copies], capture_output=True, text=True, timeout=120)
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
    if proc.returncode != 0 and not lines:
        lines = [f"systemd-analyze verify exited {proc.returncode}"]
    return lines


# ---- Dockerfile --------------------------------------------------------------------------


def dockerfile_problems(text: str, ignore: str) -> list[str]:
    out = []
    stages = re.split(r"(?m)^FROM\s+", text)[1:]
    if len(stages) < 2:
        out.append("not a multi-stage build")
        return out
    build, run = stages[0], stages[-1]
    if not re.match(r"rust:", build):
        out.append("the build stage is not a Rust toolchain image")
    if not re.match(r"debian:\S*-slim", run.replace("${DEBIAN_RELEASE}", "bookworm")):
        out.append("the run stage is not a slim Debian image")
    if "--locked" not in build:
        out.append("the build does not use --locked")
    users = re.findall(r"(?m)^USER\s+(\S+)", run)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        out.append("the run stage does not switch to a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        out.append("USER is not numeric: Kubernetes runAsNonRoot cannot verify a name")
    allowed = {"examples/catalog", "mappings", "schemas"}
    for line in re.findall(r"(?m)^COPY\s+(.*)$", run):
        args = line.split()
        if args[0].startswith("--from="):
            if args[1] != "/usr/local/bin/questline":
                out.append(f"copies {args[1]} from the build stage: only the binary belongs in the image")
            continue
        for src in args[:-1]:
            if src not in allowed:
                out.append(f"copies {src} into the image: only the binary, examples/catalog, mappings and schemas belong there")
    patterns = {l.strip() for l in ignore.splitlines() if l.strip() and not l.startswith("#")}
    for needed in ("target/", ".git/", "questline-data/"):
        if needed not in patterns:
            out.append(f".dockerignore does not exclude {needed}")
    return out


# ---- main --------------------------------------------------------------------------------


def main() -> int:
    checks = Checks()
    binary = os.environ.get("QUESTLINE_BIN") or None
    if binary and not os.access(binary, os.X_OK):
        checks.check(f"QUESTLINE_BIN={binary} is an executable", [f"{binary} is not executable"])
        binary = None
    versions = [K8S_OLDEST, kv.latest_version()]

    # Kubernetes
    manifests = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
    kustomization = load_yaml_docs(KUBE / "kustomization.yaml")[0]
    checks.check("deploy/kubernetes/kustomization.yaml lists every manifest",
                 kustomization_problems(kustomization, manifests))
    docs: list[dict] = []
    for path in manifests:
        file_docs = load_yaml_docs(path)
        problems = [] if file_docs else ["no object in the file"]
        for doc in file_docs:
            problems += schema_problems(doc, versions)
        checks.check(f"{rel(path)} against the schemas (Kubernetes {', '.join(kv.major_minor(v) for v in versions)}, strict)",
                     problems)
        if not path.name.endswith(".example.yaml"):
            docs += file_docs
    for doc in docs:
        if pod_spec(doc) is not None:
            checks.check(f"{doc['kind']}/{doc['metadata']['name']}: probes, security, resources",
                         workload_problems(doc))
    checks.check("the kit's invariants (static membership, maxReplicaCount = partitions, group, selectors, keyspace)",
                 kit_problems(docs))
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = subprocess.run([kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=120)
        problems = [proc.stderr.strip()] if proc.returncode != 0 else []
        rendered = [] if problems else [d for d in yaml.safe_load_all(proc.stdout) if d]
        for doc in rendered:
            problems += schema_problems(doc, versions[-1:])
            ns = doc["metadata"].get("namespace")
            if doc["kind"] != "Namespace" and ns != kustomization.get("namespace"):
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} lands in namespace {ns!r}")
        if len(rendered) != len(docs):
            problems.append(f"rendered {len(rendered)} objects, the files hold {len(docs)}")
        checks.check("kubectl kustomize deploy/kubernetes renders valid objects", problems)
    else:
        checks.note("kubectl kustomize (kubectl not installed)")

    # Compose
    compose = load_yaml_docs(COMPOSE)[0]
    problems, compose_toml, probe = compose_problems(compose)
    checks.check("deploy/docker-compose.yml: services, healthchecks, restart policies, limits", problems)
    checks.check("deploy/docker-compose.yml: the HTTP healthcheck passes on 200 and fails on 503",
                 probe_problems(probe))
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        proc = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                              capture_output=True, text=True, timeout=120)
        checks.check("docker compose config", [proc.stderr.strip()] if proc.returncode else [])
    else:
        checks.note("docker compose config (no Docker Compose v2 here)")

    # The configuration files, through questline itself.
    config_map = next((d for d in docs if d["kind"] == "ConfigMap"), {})
    configs = [("ConfigMap questline-config", (config_map.get("data") or {}).get("questline.toml", "")),
               ("compose configs.questline", compose_toml)]
    if binary:
        for where, text in configs:
            checks.check(f"{where} loads in questline ({Path(binary).name} replay --records --config)",
                         binary_config_problems(binary, where, text))
    else:
        checks.note("loading the configuration files with questline (set QUESTLINE_BIN to a built binary)")

    # systemd
    units = sorted(SYSTEMD.glob("*.service"))
    for unit in units:
        checks.check(f"{rel(unit)}: hardening, restart, stop timeout, secrets", unit_problems(unit))
    verified = systemd_verify_problems(units, binary)
    if verified is None:
        checks.note("systemd-analyze verify (systemd-analyze not installed)")
    else:
        checks.check("systemd-analyze verify deploy/systemd/*.service", verified)

    # Dockerfile
    checks.check("deploy/Dockerfile and .dockerignore",
                 dockerfile_problems((DEPLOY / "Dockerfile").read_text(), (ROOT / ".dockerignore").read_text()))

    print()
    if checks.failed:
        print(f"validate-deploy: {len(checks.failed)} of {checks.passed + len(checks.failed)} checks FAILED: "
              + "; ".join(checks.failed))
        return 1
    print(f"validate-deploy: all {checks.passed} checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
