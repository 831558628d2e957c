#!/usr/bin/env bash
# Pull a wasm artifact from a registry on this machine, end to end:
# start Debian's docker-registry on 127.0.0.1, push a tiny wasm module to it with
# curl (the distribution API: monolithic blob uploads, then the manifest), and
# pull it with the forge-oci CLI. CI runs this script as written.
#
#   bash examples/local-registry.sh            # needs: apt-get install -y docker-registry curl
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-5055}           # not 5000: Debian's own docker-registry service may hold it
HOST=127.0.0.1:$PORT
WORK=$(mktemp -d)
trap 'kill "$REGISTRY_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/registry.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/data}}
http: {addr: $HOST}
YAML
docker-registry serve "$WORK/registry.yml" & REGISTRY_PID=$!
for _ in $(seq 100); do curl -fs "http://$HOST/v2/" >/dev/null && break; sleep 0.1; done

# The artifact: an empty config and one application/wasm layer.
printf '\0asm\1\0\0\0' > "$WORK/hello.wasm"
printf '{}' > "$WORK/config.json"
push_blob() {
  local digest location
  digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  location=$(curl -fsS -X POST -D - -o /dev/null "http://$HOST/v2/plugins/hello/blobs/uploads/" \
             | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case $location in /*) location=http://$HOST$location ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
       "$location&digest=$digest" >/dev/null
  echo "$digest"
}
CONFIG=$(push_blob "$WORK/config.json")
LAYER=$(push_blob "$WORK/hello.wasm")
cat > "$WORK/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"$CONFIG","size":2},
 "layers":[{"mediaType":"application/wasm","digest":"$LAYER","size":8}]}
JSON
curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
     --data-binary "@$WORK/manifest.json" "http://$HOST/v2/plugins/hello/manifests/1.0" >/dev/null

# The session a new user types (the README shows it), with a check after each step.
export FORGE_CACHE_DIR=$WORK/cache FORGE_OCI_INSECURE_HOSTS=$HOST
forge() { cargo run --quiet -- "$@"; }
REF=$HOST/plugins/hello:1.0

forge pull "$REF" -o "$WORK/pulled.wasm"                 # cold: from the registry
cmp "$WORK/hello.wasm" "$WORK/pulled.wasm"
DIGEST=$(forge resolve "$REF")                             # what the tag points to now
[ "$DIGEST" = "sha256:$(sha256sum "$WORK/manifest.json" | cut -d' ' -f1)" ]
forge resolve "$REF" --json | grep -q "\"layer_digest\": \"$LAYER\""
forge inspect "$REF" | grep -q '"mediaType": "application/wasm"'
forge pull "$HOST/plugins/hello@$DIGEST" --json | grep -q '"from_cache": true'   # pinned: no network
forge cache ls | grep -q "^$REF  $DIGEST  8 B"
forge cache verify | grep -q "checked 2 blobs"

kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true
forge pull --offline "$REF" -o - | cmp - "$WORK/hello.wasm"  # warm, registry gone
forge cache prune --older-than 30d | grep -q "removed 0 references, 0 blobs"
forge cache clear
if forge pull --offline "$REF" 2>"$WORK/err"; then exit 1; fi
grep -q "is not in the cache" "$WORK/err"
echo "local-registry.sh: pulled, resolved, inspected, listed, verified and pruned $REF ($LAYER)"
