#!/usr/bin/env bash
# Push and pull a ~200 MiB image (4 layers of 50 MiB of random, so
# incompressible, data) through a docker-registry on 127.0.0.1, with bk
# and with `skopeo copy` in the same run, and print times and ratios:
#   push: bk build --push (warm build cache: makes the 4 layers from the
#         cached snapshots, then pushes) vs skopeo copy oci:DIR docker://
#         of the same image, each into an empty repository
#   pull: bk build of `FROM <image>` in an empty store (download, verify,
#         unpack) vs skopeo copy docker:// oci:DIR (download, verify) and
#         skopeo copy + umoci unpack (download, verify, unpack)
# Layers are uncompressed (compression=uncompressed) and skopeo runs with
# --preserve-digests (it would gzip uncompressed layers for a registry
# otherwise), so that both tools move the same bytes and no compression
# time hides the transport.
# Usage: bench/push.sh [path-to-bk]   (default: bk on PATH)
# Needs: docker-registry, skopeo, umoci, python3. Scratch: ~1.5 GiB in $TMPDIR.
set -euo pipefail

BK=${1:-bk}
command -v "$BK" >/dev/null || { echo "bench/push.sh: $BK not found (run ./install.sh)" >&2; exit 1; }
for tool in docker-registry skopeo umoci python3; do
  command -v "$tool" >/dev/null || { echo "bench/push.sh: $tool is needed" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/bk-push-bench.XXXXXX")
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# --- a registry on a free loopback port ---------------------------------
. "$(dirname "$0")/lib/registry.sh"
start_registry "$work"

# --- the image ------------------------------------------------------------
mkdir -p "$work/ctx"
{
  echo "FROM scratch"
  for i in 1 2 3 4; do
    head -c $((50 * 1024 * 1024)) /dev/urandom > "$work/ctx/layer$i.bin"
    echo "COPY layer$i.bin /data/layer$i.bin"
  done
} > "$work/ctx/Dockerfile"
export BK_ROOT="$work/root"
out="type=image,compression=uncompressed,push=true"
# Warm the build cache and give skopeo the same image as an OCI layout.
"$BK" build --progress=quiet -o "type=oci,dest=$work/image.tar,compression=uncompressed" "$work/ctx"
mkdir -p "$work/layout" && tar -xf "$work/image.tar" -C "$work/layout"
python3 - "$work/layout/index.json" <<'PY'
import json, sys
p = sys.argv[1]
index = json.load(open(p))
index["manifests"][0].setdefault("annotations", {})["org.opencontainers.image.ref.name"] = "bench"
json.dump(index, open(p, "w"))
PY

# --- push -------------------------------------------------------------------
t0=$(now)
"$BK" build --progress=quiet -o "$out,name=$host/bk:1" "$work/ctx" 2>"$work/bk-push.log"
t1=$(now); bk_push=$(elapsed "$t0" "$t1")
grep -q "5 blobs uploaded" "$work/bk-push.log" || { cat "$work/bk-push.log" >&2; echo "bk did not upload the layers and config" >&2; exit 1; }
# The push alone, as bk reports it ("… in 1.23s").
bk_push_only=$(sed -n 's/.* in \([0-9.]*\)s$/\1/p' "$work/bk-push.log" | tail -1)
t0=$(now)
skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$work/layout:bench" "docker://$host/skopeo:1"
t1=$(now); skopeo_push=$(elapsed "$t0" "$t1")

# --- pull -------------------------------------------------------------------
mkdir -p "$work/pull"
printf 'FROM %s/skopeo:1\n' "$host" > "$work/pull/Dockerfile"
t0=$(now)
BK_ROOT="$work/root-pull" "$BK" build --progress=quiet "$work/pull" 2>/dev/null
t1=$(now); bk_pull=$(elapsed "$t0" "$t1")
pulled=$(du -sm "$work/root-pull/content/blobs" | cut -f1)
[ "$pulled" -ge 190 ] || { echo "bk pulled only ${pulled} MiB" >&2; exit 1; }
t0=$(now)
skopeo copy -q --preserve-digests --dest-oci-accept-uncompressed-layers --src-tls-verify=false "docker://$host/bk:1" "oci:$work/skopeo-pull:bench"
t1=$(now); skopeo_pull=$(elapsed "$t0" "$t1")
t0=$(now)
umoci unpack --rootless --image "$work/skopeo-pull:bench" "$work/bundle" >/dev/null
t1=$(now); umoci_unpack=$(elapsed "$t0" "$t1")
skopeo_umoci=$(python3 -c "print(f'{$skopeo_pull + $umoci_unpack:.3f}')")

echo
echo "push/pull benchmark: 200 MiB in 4 uncompressed layers, loopback registry ($(nproc) cores, $(uname -r))"
printf '%-44s %9s %9s %9s\n' "case" "skopeo s" "bk s" "bk/skopeo"
printf '%-44s %9s %9s %9s\n' "push to an empty repository (bk: whole run)" "$skopeo_push" "$bk_push" "$(ratio "$bk_push" "$skopeo_push")"
printf '%-44s %9s %9s %9s\n' "push to an empty repository (bk: push only)" "$skopeo_push" "$bk_push_only" "$(ratio "$bk_push_only" "$skopeo_push")"
printf '%-44s %9s %9s %9s\n' "pull: download + verify" "$skopeo_pull" "-" "-"
printf '%-44s %9s %9s %9s\n' "pull: download + verify + unpack (umoci)" "$skopeo_umoci" "$bk_pull" "$(ratio "$bk_pull" "$skopeo_umoci")"
echo "(bk's whole run includes starting, the cached solve and making the 4 layer blobs"
echo " from snapshots; push only is bk's own timing of the upload. bk pull is a FROM-only"
echo " build in an empty store: resolve, download, verify, unpack)"
