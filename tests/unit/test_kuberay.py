"""docker/kuberay.yaml, on paper (no Kubernetes here): a RayJob whose entrypoint is a loadgen command line that
loadgen itself accepts, on a cluster with room for its senders, on an image with the Ray version loadgen[ray] pins
(every node of a Ray cluster must run the same one), with the results on a volume; docker/Dockerfile.ray builds
from this checkout. As tests/unit/test_docker_files.py checks the compose files."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((DOCKER / "kuberay.yaml").read_text())}


def _pinned_ray() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    (pin,) = [x for x in extra if x.startswith("ray")]
    m = re.fullmatch(r"ray(?:\[[a-z,]+\])?==([0-9.]+)", pin)
    assert m, f"loadgen[ray] must pin one Ray version (every node runs the same): {pin}"
    return m.group(1)


def test_the_rayjob_runs_a_loadgen_command_that_loadgen_accepts():
    from loadgen.__main__ import build_config, build_parser, resolve_options

    job = _docs()["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "loadgen"]
    cfg = build_config(resolve_options(build_parser().parse_args(argv[3:])))
    assert cfg.senders.ray_address == "auto" and cfg.senders.workers == 8
    assert not cfg.endpoint.simulated  # the simulator listens on the driver's loopback only
    assert cfg.output.output_dir.startswith("/results/") and not cfg.output.live
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["activeDeadlineSeconds"] > 0


def test_the_cluster_has_room_for_every_sender_and_none_on_the_drivers_pod():
    spec = _docs()["RayJob"]["spec"]
    workers = int(re.search(r"--workers (\d+)", spec["entrypoint"]).group(1))
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the driver's pod runs no sender
    cpus = 0
    for group in cluster["workerGroupSpecs"]:
        n = int(group["rayStartParams"]["num-cpus"])
        assert group["minReplicas"] == group["replicas"] == group["maxReplicas"]  # no autoscaling mid-run
        (c,) = group["template"]["spec"]["containers"]
        # each sender's CPU is a real core: the pod gets what Ray advertises
        assert int(c["resources"]["requests"]["cpu"]) == int(c["resources"]["limits"]["cpu"]) >= n
        cpus += n * group["replicas"]
    assert cpus >= workers  # the placement group (one CPU per sender) fits


def test_every_pod_runs_the_pinned_ray_version_from_the_loadgen_image():
    version = _pinned_ray()
    docs = _docs()
    cluster = docs["RayJob"]["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == version
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert len(images) == 1 and next(iter(images)).endswith(f"loadgen-ray:{version}")
    for p in pods:
        (c,) = p["spec"]["containers"]
        assert {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"} in c["env"]
    # the results live on a volume of the head pod (the driver's), backed by the claim defined beside it
    head = cluster["headGroupSpec"]["template"]["spec"]
    (mount,) = head["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/results"
    (vol,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    assert vol["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]


def test_the_ray_dockerfile_builds_from_this_checkout_on_the_pinned_ray_image():
    text = (DOCKER / "Dockerfile.ray").read_text()
    version = _pinned_ray()
    (base,) = re.findall(
        r"^ARG BASE_IMAGE=(\S+)", text, re.M
    )  # FROM ${BASE_IMAGE}: any base, Ray's by default
    assert base == f"rayproject/ray:{version}-py311" and re.findall(r"^FROM (\S+)", text, re.M) == [
        "${BASE_IMAGE}"
    ]
    copied = set(re.findall(r"^COPY (?:--chown=\S+ )?(\S+(?: \S+)*?) \S+$", text, re.M))
    sources = {s for group in copied for s in group.split()}
    assert sources == {"pyproject.toml", "README.md", "loadgen", "server_launchers"}
    for src in sources:
        assert (ROOT / src).exists(), src
    assert 'pip install --no-cache-dir ".[ray]"' in text
    ignore = (DOCKER / "Dockerfile.ray.dockerignore").read_text()
    for src in sources:
        assert f"!{src}" in ignore or f"!{src}/**" in ignore, f"{src} is excluded from the build context"
