"""deploy/: the Kubernetes manifests against the Kubernetes schemas (one pinned version), the
drain arithmetic between serve.yaml and the Deployment, HAProxy's own config check, and the
Dockerfile's promises (slim, non-root, no audio extra)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"  # the Kubernetes version the manifests are validated against
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))


def docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            out.append((path, doc))
    return out


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in docs() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any mistake


def test_the_validator_catches_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    broken = by_kind("Deployment")
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "ninety"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_grace_period_covers_prestop_drain_and_goodbye() -> None:
    from runner.config.serve_file import load_serve_file
    from runner.serve.telephony import _GOODBYE_PLAY_S

    serve = load_serve_file(
        DEPLOY / "serve.yaml",
        env={
            "TWILIO_AUTH_TOKEN": "x" * 8,
            "ACS_CONNECTION_STRING": "y",
            "ACS_EVENT_GRID_SECRET": "z",
        },
    )
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert serve.drain_timeout_s is not None
    needed = int(pre_stop[1]) + serve.drain_timeout_s + _GOODBYE_PLAY_S
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert pod["terminationGracePeriodSeconds"] <= needed + 30  # not a number picked at random
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "deploy/serve.yaml" in container["args"]


def test_hpa_scales_on_the_metric_the_worker_serves(tmp_path: Path) -> None:
    from runner.serve.metrics import ServeMetrics

    hpa = by_kind("HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    exposed = ServeMetrics().exposition()[0].decode()
    assert re.search(rf"^{name}\{{", exposed, re.MULTILINE), exposed[:500]
    adapter = yaml.safe_load(by_kind("ConfigMap")["data"]["config.yaml"])
    assert any(name in rule["seriesQuery"] for rule in adapter["rules"])
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind("Deployment")["metadata"]["name"]


def test_service_selects_the_deployment_pods() -> None:
    service = by_kind("Service")
    labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_haproxy_accepts_the_example_config() -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    env = {
        **os.environ,
        "VLRUN_LB_BIND": "127.0.0.1:1",
        "VLRUN_WORKER1": "127.0.0.1:2",
        "VLRUN_WORKER2": "127.0.0.1:3",
    }
    ok = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = (DEPLOY / "haproxy.cfg").read_text().replace("balance leastconn", "balance nosuch")
    bad_cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"vlrun-haproxy-{os.getpid()}.cfg"
    bad_cfg.write_text(broken)
    try:
        bad = subprocess.run([haproxy, "-c", "-f", str(bad_cfg)], env=env, capture_output=True)
    finally:
        bad_cfg.unlink()
    assert bad.returncode != 0


def test_dockerfile_is_slim_non_root_and_leaves_audio_out() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms and all(image.endswith("-slim") for image in froms)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0"))
    assert "[serve]" in text and "[audio]" not in text and "portaudio" not in text.lower()
    cmd = re.search(r"^CMD (.+)$", text, re.MULTILINE)
    assert cmd is not None and "deploy/serve.yaml" in cmd.group(1)
    for copied in re.findall(r"^COPY (?:--from=\S+ )?(\S+)", text, re.MULTILINE):
        if not copied.startswith("/"):
            assert (ROOT / copied).exists(), copied  # everything the build copies is there


def test_every_file_the_package_reads_is_in_its_wheel() -> None:
    """Non-Python files under runner/ (the console's page, the schemas) ship only if the
    package data names them: the Docker image installs the wheel, not the tree."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]
    missing = []
    for path in (ROOT / "runner").rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        rel = path.relative_to(ROOT)
        package = ".".join(rel.parent.parts)
        shipped = any(
            (package == pkg or package.startswith(pkg + "."))
            and any(fnmatch.fnmatch(str(rel.relative_to(Path(*pkg.split(".")))), g) for g in pats)
            for pkg, pats in globs.items()
        )
        if not shipped:
            missing.append(str(rel))
    assert missing == []
