"""docker/: compose files parse and hold together (engine GPU reservation + health check, loadgen waits for a
healthy engine and writes to a mounted folder, Prometheus scrapes the engine, Grafana is provisioned with real
PromQL), optionally against the compose-spec JSON schema; the Dockerfile's steps work on this checkout."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ENGINES = ("vllm", "sglang", "tgi", "llamacpp")


def load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def merged(engine: str) -> dict:
    """``docker compose -f compose.yaml -f compose.<engine>.yaml``: services merge key by key."""
    base, over = load("compose.yaml"), load(f"compose.{engine}.yaml")
    services = dict(base["services"])
    for name, svc in over["services"].items():
        services[name] = {**services.get(name, {}), **svc}
    return {**base, "services": services}


@pytest.mark.parametrize("engine", ENGINES)
def test_compose_full_run_structure(engine):
    doc = merged(engine)
    svc = doc["services"]
    assert set(svc) == {"engine", "loadgen", "prometheus", "grafana"}
    eng = svc["engine"]
    devices = eng["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert "/health" in " ".join(eng["healthcheck"]["test"]) and eng["healthcheck"]["retries"] >= 1
    assert eng["environment"][0] == "HF_TOKEN"  # by name: compose copies it from the caller's environment
    assert not any("hf_" in str(e) for e in eng["environment"])
    assert {"8000" in eng["command"], "--port 8000" in eng["command"]} == {True}
    lg = svc["loadgen"]
    assert lg["depends_on"]["engine"]["condition"] == "service_healthy"
    assert any(v.endswith(":/results") for v in lg["volumes"]) and "--output-dir /results" in lg["command"]
    assert "http://engine:8000" in lg["command"]
    assert lg["build"]["dockerfile"] == "docker/Dockerfile"
    # every host-side path the stack mounts exists in the repository
    for s in svc.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                assert (DOCKER / src).exists(), src
    if engine == "sglang":
        assert "--enable-metrics" in eng["command"]
    if engine == "tgi":
        assert any(str(e).startswith("PREFIX_CACHING=") for e in eng["environment"])
    if engine == "llamacpp":  # the flags loadgen's dialect needs, spelled as llama-server's help spells them
        from server_launchers.flags import flag_table

        assert "--metrics --slots" in eng["command"] and "LLAMA_CACHE=/models" in eng["environment"]
        table = flag_table("llamacpp", "0.3.36")
        words = re.sub(r"\$\{[A-Z_]+:-|\}", " ", eng["command"]).split()
        flags = [w for w in words if w.startswith("-") and not w.lstrip("-").isdigit()]
        assert {"-hf", "--alias", "-ngl"} <= set(flags) and not [f for f in flags if f not in table]


def test_cpu_full_run_overlay():
    """compose.llamacpp-cpu.yaml (docker/full_run.sh): no GPU, a health check, Grafana off, results on a volume."""
    over = load("compose.llamacpp-cpu.yaml")
    eng = over["services"]["engine"]
    assert "deploy" not in eng and "/health" in " ".join(eng["healthcheck"]["test"])
    assert "--port 8000" in eng["command"] and "--host 0.0.0.0" in eng["command"]
    assert over["services"]["loadgen"]["volumes"] == ["results:/results"] and "results" in over["volumes"]
    assert load("compose.yaml")["services"]["grafana"]["profiles"] == ["grafana"]
    script = (DOCKER / "full_run.sh").read_text()
    assert "compose.llamacpp-cpu.yaml" in script and "down --volumes --remove-orphans" in script
    for dockerfile in DOCKER.glob("Dockerfile*"):  # every one takes its base as a build argument
        if not dockerfile.name.endswith(".dockerignore"):
            text = dockerfile.read_text()
            assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M) and "FROM ${BASE_IMAGE}" in text, (
                dockerfile.name
            )


def test_compose_engine_defaults_match_pinned_images():
    from server_launchers.spec import DEFAULT_IMAGES

    for engine in ENGINES:
        image = load(f"compose.{engine}.yaml")["services"]["engine"]["image"]
        repo, tag = DEFAULT_IMAGES[engine]
        assert repo in image and tag in image, (engine, image)


def _compose_schema() -> Path | None:
    """The compose-spec JSON schema, from LOADGEN_COMPOSE_SCHEMA or from PyPI's docker-compose 1.29.2 wheel
    (``compose/config/compose_spec.json``), downloaded once without installing it (its pins would downgrade
    PyYAML) and cached under ~/.cache/loadgen."""
    if os.environ.get("LOADGEN_COMPOSE_SCHEMA"):
        return Path(os.environ["LOADGEN_COMPOSE_SCHEMA"])
    cache = (
        Path(os.environ.get("LOADGEN_CACHE_DIR", Path.home() / ".cache" / "loadgen")) / "compose_spec.json"
    )
    if cache.is_file():
        return cache
    import subprocess
    import sys
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
             "docker-compose==1.29.2", "-d", tmp],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        wheels = list(Path(tmp).glob("docker_compose-*.whl"))
        if r.returncode != 0 or not wheels:
            return None
        with zipfile.ZipFile(wheels[0]) as z:
            data = z.read("compose/config/compose_spec.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    return cache


def test_compose_files_validate_against_the_compose_spec_schema():
    jsonschema = pytest.importorskip("jsonschema")
    path = _compose_schema()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("could not obtain the compose-spec schema (pip download docker-compose==1.29.2)")
        pytest.skip("no compose-spec schema: no PyPI access (or set LOADGEN_COMPOSE_SCHEMA)")
    schema = json.loads(Path(path).read_text())
    validator = jsonschema.Draft201909Validator(schema)
    for name in ["compose.yaml", "compose.llamacpp-cpu.yaml", *(f"compose.{e}.yaml" for e in ENGINES)]:
        errors = [e.message for e in validator.iter_errors(load(name))]
        assert errors == [], (name, errors)
    for engine in ENGINES:
        assert [e.message for e in validator.iter_errors(merged(engine))] == []
    # the schema has teeth: a service with an unknown key is rejected
    bad = {"services": {"engine": {"image": "x", "gpu_count": 1}}}
    assert list(validator.iter_errors(bad))


def test_prometheus_scrapes_the_engine_and_loadgen():
    cfg = load("prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["engine"]["static_configs"][0]["targets"] == ["engine:8000"]
    assert jobs["engine"]["metrics_path"] == "/metrics"
    # loadgen's --metrics-port in compose.yaml is the port Prometheus scrapes, on every address of the container
    port = jobs["loadgen"]["static_configs"][0]["targets"][0].removeprefix("loadgen:")
    command = load("compose.yaml")["services"]["loadgen"]["command"]
    assert f"--metrics-port {port} --metrics-host 0.0.0.0" in command and "--metrics-linger" in command


def test_grafana_provisioning_and_dashboard_promql():
    ds = load("grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    prov = load("grafana/provisioning/dashboards/loadgen.yml")["providers"][0]
    assert prov["options"]["path"] == "/var/lib/grafana/dashboards"
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "loadgen-engine.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    joined = "\n".join(exprs)
    for metric in (
        "vllm:kv_cache_usage_perc",
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds_bucket",
    ):
        assert metric in joined
    for e in exprs:  # balanced parentheses; histogram_quantile only over _bucket series
        assert e.count("(") == e.count(")"), e
        if e.startswith("histogram_quantile"):
            assert re.search(r"rate\([a-z0-9:_]+_bucket\[\d+m\]\)", e) and re.search(r"by \(le[,)]", e), e
    titles = " ".join(p["title"] for p in dash["panels"])
    assert "KV" in titles and "Queue" in titles and "TTFT" in titles
    assert all(p["datasource"]["uid"] == ds["uid"] for p in dash["panels"])


_PROMQL_WORDS = {
    "histogram_quantile",
    "sum",
    "rate",
    "by",
    "without",
    "avg",
    "max",
    "min",
    "irate",
    "increase",
}


def _promql_metrics(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords, label names in
    ``by (...)`` or ``{...}`` matchers, or range selectors."""
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without)\s*\([^)]*\)", " ", expr)
    return {m for m in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if m not in _PROMQL_WORDS}


def _exposed_by_engines() -> set[str]:
    """Every series name in the engines' metric texts captured in tests/data (vLLM, llama.cpp, SGLang, TGI)."""
    names = set()
    for path in (ROOT / "tests" / "data").rglob("*.txt"):
        for line in path.read_text().splitlines():
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", line)
            if m and not line.startswith("#"):
                names.add(m.group(1))
    return names


def _exposed_by_loadgen() -> set[str]:
    """Every series name a live exporter serves, scraped over HTTP after one finished record."""
    import urllib.request

    from loadgen.records.record import RequestRecord, record_dict
    from loadgen.report.exporter import Figures, serve

    figures = Figures("dash")
    rec = RequestRecord(0, intended_ns=0, dispatched_ns=10, send_ns=20, first_token_ns=1_000, last_token_ns=3_000,
                        end_ns=4_000, chunk_ns=[1_000, 2_000, 3_000], chunk_tokens=[1, 1, 1], chunk_kind="rcc",
                        completion_tokens=3)  # fmt: skip
    figures.fold([record_dict(rec)])
    server, thread = serve(figures, 0, "127.0.0.1")
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=10
        ) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, re.M)}


def test_every_dashboard_expression_reads_metrics_that_exist():
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "loadgen-engine.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    engines, client = _exposed_by_engines(), _exposed_by_loadgen()
    assert {"vllm:time_to_first_token_seconds_bucket", "llamacpp:tokens_predicted_total"} <= engines
    assert {"loadgen_ttft_seconds_bucket", "loadgen_requests_total", "loadgen_in_flight_requests"} <= client
    read = {m for e in exprs for m in _promql_metrics(e)}
    assert not read - engines - client, (
        f"the dashboard reads series nobody exposes: {sorted(read - engines - client)}"
    )
    # the parser has teeth: a misspelt name is caught, a label name is not taken for a metric
    assert _promql_metrics(
        "histogram_quantile(0.5, sum by (le, run) (rate(vllm:ttft_bucket{run='x'}[1m])))"
    ) == {"vllm:ttft_bucket"}
    # client panels sit beside the server ones: client TTFT and a server TTFT in one panel
    ttft = [p for p in dash["panels"] if any("loadgen_ttft_seconds" in t["expr"] for t in p["targets"])]
    assert ttft and any("vllm:time_to_first_token_seconds" in t["expr"] for t in ttft[0]["targets"])
    assert read & client and read & engines


def test_dockerfile_steps_work_on_this_checkout(tmp_path):
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^USER loadgen$", text, re.M), "must run as non-root"
    assert 'ENTRYPOINT ["python", "-m", "loadgen"]' in text and "slim" in text
    copied = set(re.findall(r"^COPY (?!--from)(\S+)", text, re.M))
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: missing from the build context"
    # setuptools' package discovery must find everything it needs in what is copied
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    assert {p.rstrip("*") for p in include} <= copied
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text()
    for src in copied:
        assert f"!{src}" in ignore or f"!{src}/**" in ignore, f"{src} is excluded from the build context"
    # the install step builds from exactly what is copied: an sdist of a copy of the build context
    # (pyproject parses, package discovery finds both packages, package data comes along). PEP 517's
    # build_sdist needs no network and no `wheel`, unlike `pip install --dry-run` without build isolation.
    ctx = tmp_path / "ctx"
    for src in copied:
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, ctx / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            ctx.mkdir(exist_ok=True)
            shutil.copy2(ROOT / src, ctx / src)
    code = "import setuptools.build_meta as b, sys; print(b.build_sdist(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=ctx, capture_output=True,
                         text=True, timeout=240)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    sdist = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in (
        "loadgen/__main__.py",
        "server_launchers/spec.py",
        "server_launchers/flags/sglang-0.5.23.json",
    ):
        assert needed in names, needed
    # ... and the entry point runs
    ran = subprocess.run(
        [sys.executable, "-m", "loadgen", "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert ran.returncode == 0 and "usage" in ran.stdout
