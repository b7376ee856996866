#!/usr/bin/env bash
# A full run in containers on a CPU machine that reaches no container registry, in one command:
#
#   bash docker/full_run.sh --engine llamacpp [-- LOADGEN ARGS]
#
# llama.cpp's llama-server (the e2e tier's CPU build and tiny reasoning model) + Prometheus + loadgen, with compose
# (docker/compose.yaml + docker/compose.llamacpp-cpu.yaml). In order: starts dockerd if none answers (data root and
# socket under $LOADGEN_CACHE_DIR/docker, stopped by its PID at the end); makes the Debian bookworm base image
# (docker/local_base.sh) and builds the three images on it (cached: an unchanged image costs a second); brings the
# services up, lets loadgen run its workload and exit; saves Prometheus's answers about the run
# (prometheus/*.json: loadgen_requests_total, the engine's series, `up`) and the engine's log into the results; copies
# loadgen's results folder to the host; tears everything down (no container, network or volume is left; the images
# stay, as the build cache); prints `results: PATH` as its last line. Exit code: loadgen's.
# A problem before loadgen runs is one line on stderr: exit 2 for what the user changes (a port in use, a missing
# tool, bad arguments), 1 for what failed (dockerd did not start, a build failed, the engine never became healthy).
#
# Environment: LOADGEN_CACHE_DIR (~/.cache/loadgen), LOADGEN_RESULTS (./results: the results folder goes below it),
# LOADGEN_LABEL (fullrun-llamacpp), PROMETHEUS_PORT (9090, on 127.0.0.1), DOCKER_HOST (a dockerd to use).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "full_run: $*" >&2; }
die() { # die CODE MESSAGE: one line, then the EXIT trap tears down what was started
    local code=$1
    shift
    say "$*"
    exit "$code"
}

engine=""
loadgen_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --engine) engine="${2:-}"; shift 2 || die 2 "--engine needs a value (llamacpp)" ;;
        --engine=*) engine="${1#--engine=}"; shift ;;
        --) shift; loadgen_args=("$@"); break ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die 2 "unknown argument $1 (usage: bash docker/full_run.sh --engine llamacpp [-- LOADGEN ARGS])" ;;
    esac
done
case "$engine" in
    llamacpp) ;;
    "") die 2 "--engine is required: llamacpp (vLLM, SGLang and TGI need a GPU host: see docker/README.md)" ;;
    *) die 2 "--engine $engine: this script runs llamacpp on a CPU machine; on a GPU host use compose.$engine.yaml (docker/README.md)" ;;
esac

cache="${LOADGEN_CACHE_DIR:-$HOME/.cache/loadgen}"
dcache="$cache/docker"
label="${LOADGEN_LABEL:-fullrun-llamacpp}"
prom_port="${PROMETHEUS_PORT:-9090}"
project="loadgen-fullrun"
py="${PYTHON:-python3}"
mkdir -p "$dcache"
results_root="$(mkdir -p "${LOADGEN_RESULTS:-$root/results}" && cd "${LOADGEN_RESULTS:-$root/results}" && pwd)"
dest="$results_root/$(date -u +%Y%m%dT%H%M%SZ)-$label"
if [ ${#loadgen_args[@]} -eq 0 ]; then
    loadgen_args=(--arrival poisson --rate 4 --num-requests 40 --max-tokens 96 --seed 1 --no-live)
fi

# ------------------------------------------------------------------------------------------- tear-down (always)
dockerd_pid=""
exec_root=""
compose_up=0
ctx=""
compose() {
    if command -v docker-compose >/dev/null 2>&1; then
        docker-compose -p "$project" -f docker/compose.yaml -f docker/compose.llamacpp-cpu.yaml "$@"
    else
        docker compose -p "$project" -f docker/compose.yaml -f docker/compose.llamacpp-cpu.yaml "$@"
    fi
}
cleanup() { # idempotent: at the end of a run, and on any exit
    set +e
    if [ "$compose_up" = 1 ]; then
        compose_up=0
        compose down --volumes --remove-orphans --timeout 10 >>"$dcache/compose.log" 2>&1 \
            || say "compose down failed (see $dcache/compose.log)"
    fi
    [ -n "$ctx" ] && rm -rf "$ctx"
    ctx=""
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$dockerd_pid" 2>/dev/null && { say "dockerd (PID $dockerd_pid) did not stop; killing it"; kill -9 "$dockerd_pid"; }
        [ -n "$exec_root" ] && rm -rf "$exec_root"
        dockerd_pid=""
    fi
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------- tools and dockerd
for tool in docker curl "$py"; do
    command -v "$tool" >/dev/null 2>&1 \
        || die 2 "$tool is missing (Debian: apt-get install docker.io docker-compose prometheus debootstrap curl)"
done
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
    || die 2 "docker compose is missing (Debian: apt-get install docker-compose)"
command -v prometheus >/dev/null 2>&1 || die 2 "prometheus is missing (Debian: apt-get install prometheus)"

if (exec 3<>"/dev/tcp/127.0.0.1/$prom_port") 2>/dev/null; then
    die 2 "port $prom_port (Prometheus) is in use on 127.0.0.1: stop what listens there or set PROMETHEUS_PORT"
fi

own_sock="$dcache/docker.sock"
own_pidfile="$dcache/dockerd.pid"
if ! docker info >/dev/null 2>&1; then
    export DOCKER_HOST="unix://$own_sock"
    if docker info >/dev/null 2>&1; then # ours, left by a run that was killed: adopt it, so it is stopped at the end
        dockerd_pid="$(cat "$own_pidfile" 2>/dev/null || true)"
        say "reusing the dockerd an earlier run left (PID ${dockerd_pid:-unknown}); it is stopped at the end"
    else
        command -v dockerd >/dev/null 2>&1 || die 2 "no dockerd answers and none is installed (Debian: apt-get install docker.io)"
        [ "$(id -u)" = 0 ] || die 2 "no dockerd answers and starting one needs root"
        rm -f "$own_sock"
        exec_root="$(mktemp -d /tmp/loadgen-dockerd.XXXXXX)" # short: containerd's socket path has a length limit
        dockerd --data-root "$dcache/data" --exec-root "$exec_root" --host "$DOCKER_HOST" \
            --pidfile "$own_pidfile" >"$dcache/dockerd.log" 2>&1 &
        dockerd_pid=$!
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.5
        done
        docker info >/dev/null 2>&1 || die 1 "dockerd did not start: $(grep -iE 'level=(fatal|error)|failed' "$dcache/dockerd.log" | tail -1 | cut -c1-200) (log $dcache/dockerd.log)"
        say "started dockerd (PID $dockerd_pid, data root $dcache/data); it is stopped at the end"
    fi
fi

# ------------------------------------------------------------------------------------------- what the images hold
say "llama-server and the tiny model (server_launchers.local_llamacpp setup; cached in $cache)"
"$py" -m server_launchers.local_llamacpp setup >"$dcache/setup.log" 2>&1 \
    || die 1 "llama-server or its model could not be set up: $(tail -1 "$dcache/setup.log") (log $dcache/setup.log)"
mapfile -t host_files < <("$py" -c 'from server_launchers import local_llamacpp as l; print(l.binary_path()); print(l.model_path()); print(l.MODEL_NAME); print(" ".join(l.DEFAULT_ARGS))')
llama_server="${host_files[0]}" model="${host_files[1]}"
export SERVED_NAME="${host_files[2]}" ENGINE_ARGS="${host_files[3]}"

# loadgen's dependencies (and setuptools, to install loadgen itself) as wheels for the image's Python (Debian
# bookworm's 3.11, glibc 2.36), fetched by the host's pip, which reaches PyPI through the host's own configuration:
# the image build then needs no network. Cached by the dependency list.
deps="$("$py" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')"
wheels="$dcache/wheels-cp311-$(printf '%s\n' "$deps" | sha256sum | cut -c1-10)"
if [ ! -f "$wheels/.complete" ]; then
    say "wheels of loadgen's dependencies for the image's Python 3.11 -> $wheels (once)"
    rm -rf "$wheels"
    printf '%s\nsetuptools>=68\nwheel\n' "$deps" >"$dcache/requirements.txt"
    platforms=()
    for v in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${v}_$(uname -m)"); done
    platforms+=(--platform "manylinux2014_$(uname -m)")
    "$py" -m pip download -q --dest "$wheels" --only-binary :all: --python-version 3.11 --implementation cp \
        --abi cp311 --abi abi3 --abi none "${platforms[@]}" -r "$dcache/requirements.txt" >"$dcache/wheels.log" 2>&1 \
        || die 1 "pip could not fetch the wheels: $(tail -1 "$dcache/wheels.log") (log $dcache/wheels.log)"
    touch "$wheels/.complete"
fi

base="$(bash docker/local_base.sh 2>"$dcache/local_base.log" | tail -1)" \
    || die 1 "no base image: $(tail -1 "$dcache/local_base.log")"
[ -n "$base" ] || die 1 "no base image: $(tail -1 "$dcache/local_base.log")"

# ------------------------------------------------------------------------------------------- images (cached)
ctx="$(mktemp -d "$dcache/ctx.XXXXXX")"
mkdir -p "$ctx/loadgen/docker/wheels" "$ctx/llamacpp" "$ctx/prometheus"
tar -cf - --exclude=__pycache__ pyproject.toml README.md loadgen server_launchers | tar -xf - -C "$ctx/loadgen"
cp "$wheels"/*.whl "$ctx/loadgen/docker/wheels/"
cp "$llama_server" "$ctx/llamacpp/llama-server"
cp "$model" "$ctx/llamacpp/model.gguf"
cp "$(command -v prometheus)" "$ctx/prometheus/prometheus"

export LOADGEN_IMAGE="$project/loadgen:local" LLAMACPP_CPU_IMAGE="$project/llamacpp:cpu" \
    PROMETHEUS_IMAGE="$project/prometheus:local"
build() { # build IMAGE DOCKERFILE CONTEXT: no network inside (everything is in the context)
    local t0=$SECONDS
    if ! docker build --force-rm --network none --build-arg "BASE_IMAGE=$base" -f "$2" -t "$1" "$3" >"$dcache/build.log" 2>&1; then
        die 1 "building $1 failed: $(grep -vE '^\s*$' "$dcache/build.log" | tail -1 | cut -c1-200) (log $dcache/build.log)"
    fi
    say "image $1 ($((SECONDS - t0)) s)"
}
build "$LOADGEN_IMAGE" docker/Dockerfile "$ctx/loadgen"
build "$LLAMACPP_CPU_IMAGE" docker/Dockerfile.llamacpp-prebuilt "$ctx/llamacpp"
build "$PROMETHEUS_IMAGE" docker/Dockerfile.prometheus "$ctx/prometheus"
rm -rf "$ctx"
ctx=""
# an image rebuilt for changed source leaves its predecessor untagged: in our own data root, drop those
if [ -n "$dockerd_pid" ]; then docker image prune -f >/dev/null 2>&1 || true; fi

# ------------------------------------------------------------------------------------------- the run
export LOADGEN_LABEL="$label" LOADGEN_ARGS="${loadgen_args[*]}" PROMETHEUS_PORT="$prom_port"
compose_up=1
say "compose up: engine, Prometheus, loadgen ($LOADGEN_ARGS)"
if ! compose up -d --no-build >"$dcache/compose.log" 2>&1; then
    die 1 "compose up failed: $(grep -vE '^\s*$' "$dcache/compose.log" | tail -1 | cut -c1-200) (log $dcache/compose.log)"
fi
cid="$(compose ps -q loadgen)"
[ -n "$cid" ] || die 1 "no loadgen container (see $dcache/compose.log)"
docker logs -f "$cid" 2>&1 || true
code="$(docker wait "$cid")"

mkdir -p "$dest"
docker cp "$cid:/results/." "$dest/" || say "could not copy loadgen's results out of its container"
docker logs "$(compose ps -q engine)" >"$dest/engine.log" 2>&1 || true
mkdir -p "$dest/prometheus"
query() { # query NAME PROMQL: Prometheus's answer, as its HTTP API gives it
    curl -fsS -G --max-time 10 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$2" \
        >"$dest/prometheus/$1.json" 2>>"$dest/prometheus/errors.log" || say "Prometheus did not answer $2"
}
query loadgen_requests_total "loadgen_requests_total{run=\"$label\"}"
query loadgen_ttft_count "loadgen_ttft_seconds_count{run=\"$label\"}"
# loadgen's figures are asked for first: its exporter has just gone, and the next scrape of it marks them stale.
# The engine's as they stand after the run: wait (bounded: four scrape intervals) for a scrape of the engine
# that began after loadgen ended and brought samples (one taken while it was busy or loading can bring none)
ended="$(date +%s)"
for _ in $(seq 1 40); do
    curl -fsS -G --max-time 5 "http://127.0.0.1:$prom_port/api/v1/query" \
        --data-urlencode "query=scrape_samples_scraped{job=\"engine\"} > 0 and timestamp(up{job=\"engine\"}) > $ended" \
        2>/dev/null | grep -q '"value"' && break
    sleep 0.5
done
query engine_prompt_tokens 'llamacpp:prompt_tokens_total'
query engine_tokens_predicted 'llamacpp:tokens_predicted_total'
query up 'up'
[ -s "$dest/prometheus/errors.log" ] || rm -f "$dest/prometheus/errors.log"
cleanup
echo "results: $dest"
exit "$code"
