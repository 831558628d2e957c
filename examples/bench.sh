#!/usr/bin/env bash
# Cold pulls from Debian's docker-registry on 127.0.0.1, side by side with curl.
#
#   examples/bench.sh [RUNS]      # RUNS per figure, the median is shown (default 5)
#
# Pushes random (incompressible) blobs of 16 MiB and 256 MiB as one-layer wasm
# artifacts, then times, each run from a cold cache:
#   - `curl -o FILE` of the blob URL: one GET, no verification (the floor);
#   - `forge-oci pull REF` into the cache (manifest GET + blob GET + SHA-256);
#   - `forge-oci pull REF -o FILE` (the same, and the output written as it arrives);
# with the ratio to curl and the peak RSS of each process (/usr/bin/time's %M).
# Then eight 8 MiB plugins pulled at once by one `forge-oci pull REF x8` against
# one of them alone: straight to 127.0.0.1 (where the machine's CPUs are the
# limit), and through a small proxy that delays every chunk by 25 ms each way
# (50 ms of round trip, as a registry across a continent: where waiting is the
# limit, and pulling at once pays). Needs docker-registry, curl, python3,
# sha256sum and /usr/bin/time.
#
# Two peers get rows of their own in the first table when they are there (issue
# 14), timed in the same interleaved runs and their output compared to the blob:
#   - oras-py, the ORAS Python SDK: examples/peers/oras_pull.py REF DIR, when
#     `python3 -c 'import oras'` works (`pip install oras`);
#   - oci-client, the Rust crate (async: tokio, reqwest): the separate Cargo
#     project examples/peers/oci-client-pull, built into target/peers/ when
#     BENCH_PEERS=1 is set (or used as it is when already built there). It is its
#     own workspace: forge-oci's build never sees it.
#
#   BENCH_PEERS=1 examples/bench.sh 5
set -euo pipefail

RUNS=${1:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin forge-oci </dev/null
BIN=$PWD/target/release/forge-oci

ORAS_PULL=$PWD/examples/peers/oras_pull.py
if python3 -c 'import oras.client' 2>/dev/null; then
    ORAS=$(python3 -c 'import importlib.metadata as m; print(m.version("oras"))')
else
    ORAS=
    echo "oras-py rows skipped: python3 cannot import oras (pip install oras to add them)"
fi
PEER_DIR=$PWD/examples/peers/oci-client-pull
OCI_CLIENT_PULL=$PWD/target/peers/release/oci-client-pull
if [ "${BENCH_PEERS:-}" = 1 ]; then
    cargo build --release --quiet --manifest-path "$PEER_DIR/Cargo.toml" \
        --target-dir "$PWD/target/peers" </dev/null
fi
if [ -x "$OCI_CLIENT_PULL" ]; then
    # The version Cargo.lock resolved (the lock is not committed: the newest 0.18.x).
    OCI_CLIENT=$(awk '/^name = "oci-client"$/ { getline; gsub(/[^0-9.]/, ""); print }' \
        "$PEER_DIR/Cargo.lock" 2>/dev/null || true)
    OCI_CLIENT=${OCI_CLIENT:-built}
else
    OCI_CLIENT=
    echo "oci-client rows skipped: not built (BENCH_PEERS=1 examples/bench.sh builds it into target/peers/)"
fi

WORK=$(mktemp -d)
REG_PID=
PROXY_PID=
cleanup() {
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free port: ask the kernel for one through a throwaway listener.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$PORT
cat >"$WORK/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/data
http:
  addr: $HOST
EOF
docker-registry serve "$WORK/config.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    curl -sf "http://$HOST/v2/" >/dev/null && break
    sleep 0.1
done

push_blob() { # REPO FILE -> prints the digest
    local repo=$1 file=$2 digest location
    digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
    location=$(curl -sf -X POST -D - -o /dev/null "http://$HOST/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $location in /*) location=http://$HOST$location ;; esac
    case $location in *\?*) sep='&' ;; *) sep='?' ;; esac
    curl -sf -X PUT -H 'content-type: application/octet-stream' --data-binary @"$file" \
        "$location${sep}digest=$digest" >/dev/null
    echo "$digest"
}

push_wasm() { # REPO TAG FILE -> prints the layer's digest
    local repo=$1 tag=$2 file=$3 config layer size
    printf '{}' >"$WORK/config.json"
    config=$(push_blob "$repo" "$WORK/config.json")
    layer=$(push_blob "$repo" "$file")
    size=$(stat -c %s "$file")
    cat >"$WORK/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/wasm","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"$config","size":2},"layers":[{"mediaType":"application/wasm","digest":"$layer","size":$size}]}
EOF
    curl -sf -X PUT -H 'content-type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary @"$WORK/manifest.json" "http://$HOST/v2/$repo/manifests/$tag" >/dev/null
    echo "$layer"
}

# Runs "$@" once: prints "MICROSECONDS RSS_KIB CPU_SECONDS" (CPU: user + system
# of the client's own process, which other load on the machine does not inflate).
timed() {
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/stderr" ||
        { cat "$WORK/stderr" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(tail -n1 "$WORK/rss" | awk '{ print $1, $2 + $3 }')"
}

# Appends one run of "$@" (after `reset_out`) to the file $1.
run_into() {
    local file=$1
    shift
    reset_out
    timed "$@" >>"$file"
}

# The median time, the largest peak RSS and the median CPU time of the runs in
# a file: "SECONDS RSS_MIB CPU_SECONDS".
summary() {
    sort -n -k3 "$1" | awk '{ c[NR] = $3 } END { print (NR % 2) ? c[(NR + 1) / 2] : (c[NR / 2] + c[NR / 2 + 1]) / 2 }' >"$WORK/cpu"
    sort -n "$1" | awk -v cpu="$(cat "$WORK/cpu")" '{ t[NR] = $1; if ($2 > rss) rss = $2 }
        END { m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2;
              printf "%.3f %.1f %.2f\n", m / 1e6, rss / 1024, cpu }'
}

reset_out() { rm -rf "$WORK/cache" "$WORK/out.wasm" "$WORK/oras"; }
same() { # FILE BLOB WHO: the run wrote the blob's bytes, or the benchmark stops
    cmp -s "$1" "$2" || { echo "$3 wrote the wrong bytes" >&2; exit 1; }
}
row() { # LABEL CLIENT SECONDS RSS BASE CPU
    awk -v l="$1" -v c="$2" -v t="$3" -v r="$4" -v b="$5" -v cpu="$6" \
        'BEGIN { printf "%-8s %-31s %7.3f s %6.2fx %8.1f MiB %6.2f s\n", l, c, t, t / b, r, cpu }'
}

echo "forge-oci $("$BIN" --version | cut -d' ' -f2)${ORAS:+, oras-py $ORAS}${OCI_CLIENT:+, oci-client $OCI_CLIENT}, docker-registry on $HOST, median of $RUNS cold runs, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-8s %-31s %9s %7s %12s %8s\n' blob client wall "x curl" "peak RSS" "CPU"
for mib in 16 256; do
    head -c $((mib << 20)) /dev/urandom >"$WORK/blob-$mib"
    layer=$(push_wasm bench/plugin "m$mib" "$WORK/blob-$mib")
    ref=$HOST/bench/plugin:m$mib
    pull=("$BIN" pull "$ref" --insecure "$HOST" --cache-dir "$WORK/cache" -q)
    rm -f "$WORK"/t.*
    # Interleaved, so that whatever else the machine does weighs on all alike.
    for _ in $(seq "$RUNS"); do
        run_into "$WORK/t.curl" curl -sf -o "$WORK/out.wasm" "http://$HOST/v2/bench/plugin/blobs/$layer"
        run_into "$WORK/t.pull" "${pull[@]}"
        run_into "$WORK/t.out" "${pull[@]}" -o "$WORK/out.wasm"
        same "$WORK/out.wasm" "$WORK/blob-$mib" "forge-oci pull -o"
        if [ -n "$ORAS" ]; then
            # The layer has no title annotation: oras-py names the file by its digest.
            run_into "$WORK/t.oras" python3 "$ORAS_PULL" "$ref" "$WORK/oras"
            same "$WORK/oras/$layer" "$WORK/blob-$mib" "oras-py"
        fi
        if [ -n "$OCI_CLIENT" ]; then
            run_into "$WORK/t.oci" "$OCI_CLIENT_PULL" "$ref" "$WORK/out.wasm"
            same "$WORK/out.wasm" "$WORK/blob-$mib" "oci-client"
        fi
    done
    read -r ct cr cc < <(summary "$WORK/t.curl")
    read -r ft fr fc < <(summary "$WORK/t.pull")
    read -r ot or oc < <(summary "$WORK/t.out")
    row "$mib MiB" "curl -o FILE (no verification)" "$ct" "$cr" "$ct" "$cc"
    row "$mib MiB" "forge-oci pull (into cache)" "$ft" "$fr" "$ct" "$fc"
    row "$mib MiB" "forge-oci pull -o FILE" "$ot" "$or" "$ct" "$oc"
    if [ -n "$ORAS" ]; then
        read -r pt pr pc < <(summary "$WORK/t.oras")
        row "$mib MiB" "oras-py pull (no verification)" "$pt" "$pr" "$ct" "$pc"
    fi
    if [ -n "$OCI_CLIENT" ]; then
        read -r pt pr pc < <(summary "$WORK/t.oci")
        row "$mib MiB" "oci-client pull" "$pt" "$pr" "$ct" "$pc"
    fi
    rm -f "$WORK/blob-$mib"
done

refs=()
layers=()
for i in $(seq 0 7); do
    head -c $((8 << 20)) /dev/urandom >"$WORK/plugin-$i"
    layers+=("$(push_wasm "bench/plugin-$i" 1.0 "$WORK/plugin-$i")")
    refs+=("$HOST/bench/plugin-$i:1.0")
done

# A proxy on 127.0.0.1 that forwards every chunk 25 ms after it arrived, each
# way, without limiting throughput (chunks queue; none waits for another).
cat >"$WORK/delay.py" <<'PY'
import asyncio, sys
DELAY, PORT, TARGET = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
async def pump(reader, writer):
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    async def send():
        while (item := await queue.get()) is not None:
            await asyncio.sleep(max(0, item[0] - loop.time()))
            writer.write(item[1])
            await writer.drain()
        writer.close()
    task = asyncio.create_task(send())
    while data := await reader.read(1 << 16):
        queue.put_nowait((loop.time() + DELAY, data))
    queue.put_nowait(None)
    await task
async def handle(r1, w1):
    r2, w2 = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(pump(r1, w2), pump(r2, w1), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT)
    await server.serve_forever()
asyncio.run(main())
PY
PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$WORK/delay.py" 0.025 "$PROXY_PORT" "$PORT" &
PROXY_PID=$!
FAR=127.0.0.1:$PROXY_PORT
for _ in $(seq 100); do
    curl -sf "http://$FAR/v2/" >/dev/null && break
    sleep 0.1
done

echo
printf '%-44s %6s %8s %12s\n' "eight 8 MiB plugins" wall "x one" "peak RSS"
for via in "$HOST" "$FAR"; do
    [ "$via" = "$HOST" ] && where="127.0.0.1" || where="50 ms RTT"
    common=(--insecure "$via" --cache-dir "$WORK/cache" -q)
    # The floor: curl's eight blob GETs at once (no manifests, no verification).
    gets=()
    for i in $(seq 0 7); do
        gets+=(-o "$WORK/cache/curl-$i" "http://$via/v2/bench/plugin-$i/blobs/${layers[$i]}")
    done
    rm -f "$WORK"/t.*
    for _ in $(seq "$RUNS"); do
        run_into "$WORK/t.curl1" curl -sf --create-dirs "${gets[@]:0:3}"
        run_into "$WORK/t.curl8" curl -sf --create-dirs --parallel --parallel-max 8 "${gets[@]}"
        run_into "$WORK/t.one" "$BIN" pull "$via/bench/plugin-0:1.0" "${common[@]}"
        run_into "$WORK/t.all" "$BIN" pull "${refs[@]/#$HOST/$via}" "${common[@]}"
        run_into "$WORK/t.all8" "$BIN" pull "${refs[@]/#$HOST/$via}" "${common[@]}" -j 8
    done
    read -r c1 c1r _ < <(summary "$WORK/t.curl1")
    read -r c8 c8r _ < <(summary "$WORK/t.curl8")
    read -r one onr _ < <(summary "$WORK/t.one")
    awk -v l="$where: curl, one blob" -v t="$c1" -v r="$c1r" \
        'BEGIN { printf "%-44s %6.3f s %7.2fx %8.1f MiB\n", l, t, 1, r }'
    awk -v l="$where: curl, eight blobs (--parallel)" -v t="$c8" -v b="$c1" -v r="$c8r" \
        'BEGIN { printf "%-44s %6.3f s %7.2fx %8.1f MiB\n", l, t, t / b, r }'
    awk -v l="$where: forge-oci, one alone" -v t="$one" -v r="$onr" \
        'BEGIN { printf "%-44s %6.3f s %7.2fx %8.1f MiB\n", l, t, 1, r }'
    for jobs in 4 8; do
        [ $jobs = 4 ] && file=$WORK/t.all || file=$WORK/t.all8
        read -r all allr _ < <(summary "$file")
        awk -v l="$where: forge-oci, eight at once (-j $jobs)" -v t="$all" -v b="$one" -v r="$allr" \
            'BEGIN { printf "%-44s %6.3f s %7.2fx %8.1f MiB\n", l, t, t / b, r }'
    done
done
