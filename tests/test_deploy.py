"""deploy/ stays parseable and consistent with the code.

These files can't run here (no Docker, no cluster), so the tests check what can drift:
every metric a dashboard or alert queries is one a worker exposes, every ``STREAMREC_*``
variable is a real setting, and the pieces point at each other (ports, paths, names).
"""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_app.metrics import PartitionLag, WorkerMetrics
from stream_app.settings import KafkaSecurity, Settings, settings_to_env

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"

# Series Prometheus makes itself, not scraped from a worker.
SYNTHETIC_SERIES = {"up"}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def _yaml_documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_documents(path):
            if "kind" in doc and doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings, ranges stripped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text):
        name = match.group(1)
        if name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def deploy_queries() -> dict[str, str]:
    """Every PromQL expression under deploy/, keyed by where it is."""
    queries = {}
    dashboard = json.loads((DEPLOY / "grafana/dashboards/streamrec.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries[f"grafana {panel['title']} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(selector, label)
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            queries[f"grafana variable {variable['name']}"] = selector.group(1)
    for group in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            queries[f"alert {rule['alert']}"] = rule["expr"]
    for trigger in _k8s_objects()[("ScaledObject", "streamrec")]["spec"]["triggers"]:
        queries["keda"] = trigger["metadata"]["query"]
    return queries


def deploy_metric_names() -> set[str]:
    names = set()
    for expr in deploy_queries().values():
        names |= promql_metric_names(expr)
    return names - SYNTHETIC_SERIES


def exposed_metric_names(exposition: str) -> set[str]:
    """Names of the series present (a family declared without samples does not count)."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def valid_env_names() -> set[str]:
    every_field_set = Settings(
        api_token="t",
        security=KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password="p",
            ssl_cafile="ca",
            ssl_certfile="cert",
            ssl_keyfile="key",
        ),
    )
    return set(settings_to_env(every_field_set))


# -- parsing ------------------------------------------------------------------------------


def test_every_deploy_file_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
    assert len(files) >= 12
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert _yaml_documents(path), path


def test_promql_name_extraction():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(x_bucket{job="a",le!="+Inf"}[5m])))'
        " > 3 * sum(rate(y_total[1h] offset 5m)) and on (instance) up == 0 and"
        ' deriv(sum by (g) (z_sum)[15m:1m]) > 0 unless time() - w{kind="long_term"} > 60'
    )
    assert promql_metric_names(expr) == {"x_bucket", "y_total", "up", "z_sum", "w"}


# -- metrics -----------------------------------------------------------------------------


@pytest.fixture
def populated_exposition(tmp_path) -> str:
    """A worker's /metrics with every family holding samples (no broker needed)."""
    from stream_app.app import build_app

    settings = Settings.from_env(env={}, text_encoder="hashing", data_dir=str(tmp_path))
    app, pipeline = build_app(settings, store="memory://")
    stats = pipeline.stats
    stats.dead_letters["invalid_json"] += 1
    stats.last_long_term_refresh_at = stats.last_sequence_finetune_at = 1.0
    stages = list(stats.stage_seconds.values())
    for histogram in (stats.batch_sizes, stats.batch_seconds, stats.end_to_end_seconds, *stages):
        histogram.observe(1.0)
    metrics = WorkerMetrics(app, settings, pipeline, lambda: {"ready": True})
    group = app.conf.id
    metrics.lag.snapshot = lambda: [PartitionLag(group, settings.topic_events, 0, 1, 2)]
    return metrics.exposition().decode()


def test_every_metric_in_dashboards_alerts_and_autoscaling_is_exposed(populated_exposition):
    used = deploy_metric_names()
    assert {"kafka_consumergroup_lag", "kafka_consumergroup_lag_sum"} <= used
    missing = used - exposed_metric_names(populated_exposition)
    assert not missing, f"queried under deploy/ but not exposed by a worker: {sorted(missing)}"


def test_grafana_dashboard_has_every_panel_of_the_worker_dashboard():
    from stream_app.web import dashboard_html

    worker_panels = set(re.findall(r'data-panel="([^"]+)"', dashboard_html()))
    assert len(worker_panels) >= 6
    dashboard = json.loads((DEPLOY / "grafana/dashboards/streamrec.json").read_text())
    grafana_panels = {panel["title"] for panel in dashboard["panels"]}
    assert worker_panels <= grafana_panels, worker_panels - grafana_panels
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


def test_alert_rules_are_complete():
    rules = [
        rule
        for group in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    names = {rule["alert"] for rule in rules}
    assert {
        "StreamrecWorkerDown",
        "StreamrecConsumerLagGrowing",
        "StreamrecDeadLettersSpiking",
    } <= names
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


# -- settings ------------------------------------------------------------------------------


def test_every_streamrec_variable_in_deploy_is_a_real_setting():
    valid = valid_env_names()
    used = {}
    for path in [DEPLOY / "Dockerfile", *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]:
        for name in re.findall(r"\bSTREAMREC_[A-Z0-9_]+", path.read_text()):
            used.setdefault(name, path.relative_to(DEPLOY))
    assert len(used) >= 10
    unknown = {name: str(path) for name, path in used.items() if name not in valid}
    assert not unknown, f"not settings (see stream_app/settings.py): {unknown}"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_worker_and_k8s_settings_validate():
    for service in _compose()["services"].values():
        env = service.get("environment") or {}
        if "STREAMREC_KAFKA_BOOTSTRAP" in env:
            resolved = {k: re.sub(r"\$\{[^}]*\}", "token", str(v)) for k, v in env.items()}
            Settings.from_env(env=resolved)  # raises ConfigError naming the variable
    config = _k8s_objects()[("ConfigMap", "streamrec-config")]["data"]
    Settings.from_env(env={**config, "STREAMREC_KAFKA_SASL_PASSWORD": "from-the-secret"})


def test_compose_runs_kraft_kafka_workers_prometheus_and_grafana():
    compose = _compose()
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    workers = [
        s for s in services.values() if "STREAMREC_KAFKA_BOOTSTRAP" in s.get("environment", {})
    ]
    assert len(workers) >= 2
    for worker in workers:
        env = worker["environment"]
        assert env["STREAMREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["STREAMREC_WEB_ADVERTISED_URL"] == f"http://{worker['hostname']}:6066"
        assert (ROOT / worker["build"]["dockerfile"]).is_file()
        mounts = [v.split(":")[1] for v in worker["volumes"]]
        assert env["STREAMREC_DATA_DIR"] in mounts
    for service in services.values():  # every bind mount exists
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(prometheus["rule_files"]) <= mounted
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "streamrec")
    assert job["metrics_path"] == "/metrics"
    targets = set(job["static_configs"][0]["targets"])
    assert targets == {f"{w['hostname']}:{w['environment']['STREAMREC_WEB_PORT']}" for w in workers}
    assert "grafana" in services


def test_kubernetes_statefulset_service_and_autoscaling_fit_together():
    objects = _k8s_objects()
    config = objects[("ConfigMap", "streamrec-config")]["data"]
    sts = objects[("StatefulSet", "streamrec")]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = pod["spec"]["containers"][0]
    # Table store on a persistent volume per pod, at STREAMREC_DATA_DIR.
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim)
    assert mount["mountPath"] == config["STREAMREC_DATA_DIR"]
    port = int(config["STREAMREC_WEB_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    # The headless Service gives the pods the names STREAMREC_WEB_ADVERTISED_URL uses.
    headless = objects[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= labels.items()
    advertised = next(e for e in container["env"] if e["name"] == "STREAMREC_WEB_ADVERTISED_URL")
    assert f".{headless['metadata']['name']}.$(POD_NAMESPACE)" in advertised["value"]
    assert advertised["value"].endswith(f":{port}")
    # Autoscaling targets the StatefulSet, on lag, up to one worker per partition.
    scaled = objects[("ScaledObject", "streamrec")]["spec"]
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
    }
    assert scaled["maxReplicaCount"] <= int(config["STREAMREC_PARTITIONS"])
    assert "kafka_consumergroup_lag" in scaled["triggers"][0]["metadata"]["query"]
    monitor = objects[("ServiceMonitor", "streamrec")]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


# -- packaging -----------------------------------------------------------------------------


def test_wheel_ships_the_dashboard_page(tmp_path):
    """A non-editable install serves /dashboard: the page is package data."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("stream_app", "models", "schemas"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("streamrec-*.whl")
    assert "stream_app/dashboard.html" in zipfile.ZipFile(wheel).namelist()
