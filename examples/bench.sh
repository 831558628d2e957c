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
# one of them alone. Needs docker-registry, curl, sha256sum and /usr/bin/time.
set -euo pipefail

RUNS=${1:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin forge-oci </dev/null
BIN=$PWD/target/release/forge-oci

WORK=$(mktemp -d)
REG_PID=
cleanup() {
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
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

# Runs "$@" once: prints "SECONDS RSS_KIB". The caller empties caches first.
timed() {
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f %M -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/stderr" ||
        { cat "$WORK/stderr" >&2; exit 1; }
    t1=$(date +%s%N)
    echo "$(( (t1 - t0) / 1000 )) $(tail -n1 "$WORK/rss")"
}

# Median of RUNS runs of "$@" with `reset` before each: prints "SECONDS RSS_MIB"
# (the median time, the largest peak RSS).
median() {
    local reset=$1
    shift
    for _ in $(seq "$RUNS"); do
        $reset
        timed "$@"
    done | sort -n | awk '{ t[NR] = $1; if ($2 > rss) rss = $2 }
        END { m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2;
              printf "%.3f %.1f\n", m / 1e6, rss / 1024 }'
}

reset_out() { rm -rf "$WORK/cache" "$WORK/out.wasm"; }
row() { # LABEL CLIENT SECONDS RSS BASE
    awk -v l="$1" -v c="$2" -v t="$3" -v r="$4" -v b="$5" \
        'BEGIN { printf "%-10s %-30s %8.3f s %6.2fx %8.1f MiB\n", l, c, t, t / b, r }'
}

echo "forge-oci $("$BIN" --version | cut -d' ' -f2), docker-registry on $HOST, median of $RUNS cold runs"
printf '%-10s %-30s %10s %7s %12s\n' blob client wall "x curl" "peak RSS"
for mib in 16 256; do
    head -c $((mib << 20)) /dev/urandom >"$WORK/blob-$mib"
    layer=$(push_wasm bench/plugin "m$mib" "$WORK/blob-$mib")
    ref=$HOST/bench/plugin:m$mib
    pull=("$BIN" pull "$ref" --insecure "$HOST" --cache-dir "$WORK/cache" -q)
    read -r ct cr < <(median reset_out curl -sf -o "$WORK/out.wasm" "http://$HOST/v2/bench/plugin/blobs/$layer")
    read -r ft fr < <(median reset_out "${pull[@]}")
    read -r ot or < <(median reset_out "${pull[@]}" -o "$WORK/out.wasm")
    cmp -s "$WORK/out.wasm" "$WORK/blob-$mib" || { echo "pull -o wrote the wrong bytes" >&2; exit 1; }
    row "$mib MiB" "curl -o FILE (no verification)" "$ct" "$cr" "$ct"
    row "$mib MiB" "forge-oci pull (into cache)" "$ft" "$fr" "$ct"
    row "$mib MiB" "forge-oci pull -o FILE" "$ot" "$or" "$ct"
    rm -f "$WORK/blob-$mib"
done

refs=()
for i in $(seq 0 7); do
    head -c $((8 << 20)) /dev/urandom >"$WORK/plugin-$i"
    push_wasm "bench/plugin-$i" 1.0 "$WORK/plugin-$i" >/dev/null
    refs+=("$HOST/bench/plugin-$i:1.0")
done
common=(--insecure "$HOST" --cache-dir "$WORK/cache" -q)
read -r one onr < <(median reset_out "$BIN" pull "${refs[0]}" "${common[@]}")
read -r all allr < <(median reset_out "$BIN" pull "${refs[@]}" "${common[@]}")
echo
printf '%-30s %10s %10s %12s\n' "several plugins" wall "x one" "peak RSS"
awk -v t="$one" -v r="$onr" 'BEGIN { printf "%-30s %8.3f s %9.2fx %8.1f MiB\n", "one 8 MiB plugin", t, 1, r }'
awk -v t="$all" -v b="$one" -v r="$allr" 'BEGIN { printf "%-30s %8.3f s %9.2fx %8.1f MiB\n", "eight 8 MiB plugins (-j 4)", t, t / b, r }'
