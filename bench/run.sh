#!/usr/bin/env bash
# Measures what one `RUN true` costs in bk, next to other ways of starting
# a process in a root file system, and prints milliseconds per run:
#   bk            (t(N RUN steps) - t(no RUN step)) / N, --no-cache builds:
#                 writable snapshot + sandbox + process + commit, per step
#   buildah run   `buildah run` of one working container, runc and chroot
#                 isolation (only when buildah runs here; no commit)
#   unshare+chroot  `unshare -m -p -i -u -f chroot ROOT true`, the floor
#                 for a fresh namespace set and one exec (root only)
# Usage: bench/run.sh [path-to-bk] [N]   (default: bk on PATH, N=20)
# Run it as root and as an unprivileged user with a subordinate id range
# (bk then adds its user namespace). Needs python3 and busybox-static.
set -euo pipefail

BK=${1:-bk}
N=${2:-20}
command -v "$BK" >/dev/null || { echo "bench/run.sh: $BK not found (run ./install.sh)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
per_run_ms() { python3 -c "print(f'{($2 - $1) * 1000 / $3:.1f}')"; }

mkdir -p "$work/ctx"
cp /bin/busybox "$work/ctx/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\n' > "$work/ctx/base.Dockerfile"
{
  cat "$work/ctx/base.Dockerfile"
  for i in $(seq 1 "$N"); do echo "RUN [\"/bin/busybox\", \"true\", \"$i\"]"; done
} > "$work/ctx/runs.Dockerfile"

build() { # dockerfile
  BK_ROOT="$work/root" "$BK" build --progress=quiet --no-cache -f "$work/ctx/$1" "$work/ctx" 2>/dev/null
}
# Warm up (page cache, store creation), then take the best of three.
build runs.Dockerfile
best() { # dockerfile
  local best=
  for _ in 1 2 3; do
    local t0 t1 d
    t0=$(now); build "$1"; t1=$(now)
    d=$(python3 -c "print($t1 - $t0)")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $d < $best else 1)"; then best=$d; fi
  done
  echo "$best"
}
t_base=$(best base.Dockerfile)
t_runs=$(best runs.Dockerfile)
printf '%-28s %8s ms/run\n' "bk RUN true ($(id -un))" "$(per_run_ms "$t_base" "$t_runs" "$N")"

if command -v buildah >/dev/null && [ "$(id -u)" = 0 ]; then
  ctr=$(buildah from scratch 2>/dev/null) || ctr=
  if [ -n "$ctr" ]; then
    buildah copy "$ctr" "$work/ctx/busybox" /bin/busybox >/dev/null
    for isolation in oci chroot; do
      args=(--isolation "$isolation")
      [ "$isolation" = oci ] && command -v runc >/dev/null && args+=(--runtime "$(command -v runc)")
      if buildah run "${args[@]}" "$ctr" /bin/busybox true >/dev/null 2>&1; then
        t0=$(now)
        for i in $(seq 1 "$N"); do buildah run "${args[@]}" "$ctr" /bin/busybox true "$i"; done
        t1=$(now)
        printf '%-28s %8s ms/run\n' "buildah run ($isolation)" "$(per_run_ms "$t0" "$t1" "$N")"
      else
        printf '%-28s %8s\n' "buildah run ($isolation)" "fails here"
      fi
    done
    buildah rm "$ctr" >/dev/null
  fi
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$work/rootfs/bin"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  t0=$(now)
  for i in $(seq 1 "$N"); do
    unshare --mount --pid --ipc --uts --fork chroot "$work/rootfs" /bin/busybox true "$i"
  done
  t1=$(now)
  printf '%-28s %8s ms/run\n' "unshare+chroot" "$(per_run_ms "$t0" "$t1" "$N")"
fi
