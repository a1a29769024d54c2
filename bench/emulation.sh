#!/usr/bin/env bash
# RUN natively vs under qemu-user: the same chain of 5 RUN steps of
# busybox work (write ~7 MB of numbers, sha256sum them, gzip them, gunzip
# and check them, a shell loop of 20000 iterations) built cold (empty
# store each time) with --platform linux/amd64 and with --platform
# linux/arm64, from one busybox index (amd64 + arm64) on a docker-registry
# on 127.0.0.1. Prints both times and the ratio, per round.
# Usage: bench/emulation.sh [path-to-bk] [rounds]   (default: bk on PATH, 1)
# Needs: docker-registry, skopeo, python3, an x86-64 host with
# qemu-user-static's qemu-aarch64 handler registered with F, and an arm64
# busybox in $BK_TEST_BUSYBOX_ARM64 (./test.sh fetches one).
set -euo pipefail

BK=${1:-bk}
rounds=${2:-1}
command -v "$BK" >/dev/null || { echo "bench/emulation.sh: $BK not found (run ./install.sh)" >&2; exit 1; }
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "bench/emulation.sh: $tool is needed" >&2; exit 1; }
done
[ "$(uname -m)" = x86_64 ] || { echo "bench/emulation.sh: expects an x86-64 host" >&2; exit 1; }
arm64_busybox=${BK_TEST_BUSYBOX_ARM64:-${XDG_CACHE_HOME:-$HOME/.cache}/bk-test/busybox-arm64/bin/busybox}
[ -f "$arm64_busybox" ] || { echo "bench/emulation.sh: no arm64 busybox at $arm64_busybox (run ./test.sh)" >&2; exit 1; }
[ -f /bin/busybox ] || { echo "bench/emulation.sh: /bin/busybox (busybox-static) is needed" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bk-emulation-bench.XXXXXX")
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }

# --- a registry on a free loopback port ---------------------------------
. "$(dirname "$0")/lib/registry.sh"
start_registry "$work"

# --- the busybox index: one image per architecture ----------------------
python3 - "$work/layout" /bin/busybox "$arm64_busybox" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
layout, binaries = sys.argv[1], {"amd64": sys.argv[2], "arm64": sys.argv[3]}
os.makedirs(f"{layout}/blobs/sha256")
def blob(media_type, data):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{digest}", "wb").write(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
applets = ["cat", "cmp", "echo", "gunzip", "gzip", "seq", "sha256sum", "uname", "wc"]
manifests = []
for arch, path in binaries.items():
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("bin"); d.type = tarfile.DIRTYPE; d.mode = 0o755; tar.addfile(d)
        data = open(path, "rb").read()
        f = tarfile.TarInfo("bin/busybox"); f.size = len(data); f.mode = 0o755
        tar.addfile(f, io.BytesIO(data))
        for name in ["sh"] + applets:
            l = tarfile.TarInfo(f"bin/{name}"); l.type = tarfile.SYMTYPE; l.linkname = "busybox"
            tar.addfile(l)
    raw = raw.getvalue()
    layer = blob("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(raw, mtime=0))
    config = blob("application/vnd.oci.image.config.v1+json", json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
    }).encode())
    manifest = blob("application/vnd.oci.image.manifest.v1+json", json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    }).encode())
    manifest["platform"] = {"os": "linux", "architecture": arch}
    manifests.append(manifest)
index = blob("application/vnd.oci.image.index.v1+json", json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": manifests,
}).encode())
index["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
json.dump({"schemaVersion": 2, "manifests": [index]}, open(f"{layout}/index.json", "w"))
open(f"{layout}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
skopeo copy -q --all --preserve-digests --dest-tls-verify=false "oci:$work/layout:bench" "docker://$host/emubox:1"

# --- the RUN chain -------------------------------------------------------
mkdir -p "$work/ctx"
cat > "$work/ctx/Dockerfile" <<EOF
FROM $host/emubox:1
RUN seq 1 1000000 > /nums && wc -c < /nums > /nums.size
RUN sha256sum /nums > /nums.sha256
RUN gzip -6 -c /nums > /nums.gz
RUN gunzip -c /nums.gz > /nums.back && cmp /nums /nums.back && rm /nums.back
RUN i=0; while [ \$i -lt 20000 ]; do i=\$((i + 1)); done; echo \$i > /loop; uname -m > /machine
EOF

build() { # platform store-dir out-dir
  BK_ROOT="$2" "$BK" build --progress=plain --platform "$1" -o "$3" "$work/ctx" >"$3.log" 2>&1 \
    || { cat "$3.log" >&2; echo "bench/emulation.sh: the $1 build failed" >&2; exit 1; }
}

echo
echo "emulated RUN benchmark: 5 RUN steps of busybox work, cold store ($(nproc) cores, $(uname -r))"
printf '%-6s %12s %12s %14s\n' "round" "amd64 s" "arm64 s" "arm64/amd64"
for round in $(seq "$rounds"); do
  declare -A took=()
  for platform in linux/amd64 linux/arm64; do
    arch=${platform#linux/}
    rm -rf "$work/root-$arch" "$work/out-$arch"
    t0=$(now)
    build "$platform" "$work/root-$arch" "$work/out-$arch"
    t1=$(now)
    took[$arch]=$(elapsed "$t0" "$t1")
  done
  # Each build ran its own architecture and computed the same data.
  [ "$(cat "$work/out-amd64/machine")" = x86_64 ] || { echo "amd64 build ran on $(cat "$work/out-amd64/machine")" >&2; exit 1; }
  [ "$(cat "$work/out-arm64/machine")" = aarch64 ] || { echo "arm64 build ran on $(cat "$work/out-arm64/machine")" >&2; exit 1; }
  for f in nums.sha256 nums.size loop; do
    cmp -s "$work/out-amd64/$f" "$work/out-arm64/$f" || { echo "/$f differs between the builds" >&2; exit 1; }
  done
  printf '%-6s %12s %12s %14s\n' "$round" "${took[amd64]}" "${took[arm64]}" "$(ratio "${took[arm64]}" "${took[amd64]}")x"
done
echo "(each build: resolve and pull the 1 MB base, 5 RUN steps, commit, export to a directory)"
