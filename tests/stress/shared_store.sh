#!/usr/bin/env bash
# Long-form stress test of one store shared by many `bk build` processes.
#
#   tests/stress/shared_store.sh [PROCS] [ROUNDS]      (default 8 × 20)
#
# Each round starts PROCS concurrent builds of overlapping Dockerfiles
# (same big file, a shared step, a step of their own) into one store and
# SIGKILLs about a third of them at a random moment. A build that exits 0
# must have written exactly its context's files (checked with cmp); a
# build that was not killed must not fail. At the end every context is
# rebuilt and checked, `bk du`'s total is compared with du(1), and
# `bk cache prune --all` must leave no record. Prints the figures; exits
# non-zero on any corruption or unexpected failure.
# BK (the binary) defaults to target/release/bk, then target/debug/bk.
set -euo pipefail

procs=${1:-8}
rounds=${2:-20}
here=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
bk=${BK:-}
if [[ -z $bk ]]; then
  for b in "$target/release/bk" "$target/debug/bk"; do
    [[ -x $b ]] && { bk=$b; break; }
  done
fi
[[ -x ${bk:-} ]] || { echo "no bk binary: build it or set BK" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BK_ROOT=$work/root XDG_CONFIG_HOME=$work/config
contexts=4
head -c 2000000 /dev/urandom >"$work/shared"
for i in $(seq 0 $((contexts - 1))); do
  c=$work/ctx$i
  mkdir -p "$c"
  cp "$work/shared" "$c/shared"
  head -c $((10000 + i * 1000)) /dev/urandom >"$c/own"
  printf 'FROM scratch\nCOPY shared /shared\nCOPY own /own\nCOPY shared /again\n' >"$c/Dockerfile"
done

check() { # ctx out
  cmp -s "$work/ctx$1/shared" "$2/shared" && cmp -s "$work/ctx$1/shared" "$2/again" &&
    cmp -s "$work/ctx$1/own" "$2/own" &&
    [[ $(find "$2" -mindepth 1 | wc -l) -eq 3 ]]
}

builds=0 kills=0 missed=0 ok=0 failures=0 corruptions=0
start=$(date +%s.%N)
for r in $(seq 1 "$rounds"); do
  pids=() ctxs=() outs=() victims=() killed=()
  for p in $(seq 1 "$procs"); do
    ctx=$((RANDOM % contexts))
    out=$work/out-$r-$p
    "$bk" build --progress=plain -o "$out" "$work/ctx$ctx" >/dev/null 2>"$work/log-$r-$p" &
    pids+=($!) ctxs+=("$ctx") outs+=("$out")
    victims+=($((RANDOM % 3 == 0))) killed+=(0)
  done
  for i in "${!pids[@]}"; do
    if [[ ${victims[$i]} == 1 ]]; then
      sleep "$(printf '0.%03d' $((RANDOM % 120)))"
      if kill -9 "${pids[$i]}" 2>/dev/null; then
        kills=$((kills + 1)) killed[i]=1
      else
        missed=$((missed + 1))
      fi
    fi
  done
  for i in "${!pids[@]}"; do
    builds=$((builds + 1))
    if wait "${pids[$i]}"; then
      if check "${ctxs[$i]}" "${outs[$i]}"; then
        ok=$((ok + 1))
      else
        corruptions=$((corruptions + 1))
        echo "CORRUPT: round $r build $i (ctx ${ctxs[$i]})" >&2
      fi
    elif [[ ${killed[$i]} != 1 ]]; then
      failures=$((failures + 1))
      echo "FAILED: round $r build $i:" >&2
      tail -5 "$work/log-$r-$((i + 1))" >&2
    fi
  done
  rm -rf "$work"/out-"$r"-*
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)

for i in $(seq 0 $((contexts - 1))); do
  if ! "$bk" build --progress=plain -o "$work/final$i" "$work/ctx$i" 2>"$work/final.log" >/dev/null ||
    ! check "$i" "$work/final$i"; then
    corruptions=$((corruptions + 1))
    echo "FINAL BUILD $i WRONG" >&2
    tail -5 "$work/final.log" >&2
  fi
done

records=$("$bk" du | awk 'NR > 1 && $0 == "" {exit} NR > 1 {n++} END {print n + 0}')
reported=$("$bk" du | awk '/^Total:/ {print $2}')
on_disk=0
for d in "$BK_ROOT/snapshots" "$BK_ROOT/content/blobs/sha256"; do
  [[ -d $d ]] && on_disk=$((on_disk + $(du -s --block-size=1 "$d" | cut -f1) - $(stat -c %b "$d") * 512))
done
"$bk" cache prune -f --all >/dev/null
left=$("$bk" du | awk 'NR > 1 && $0 == "" {exit} NR > 1 {n++} END {print n + 0}')

printf 'procs %s  rounds %s  builds %s  SIGKILLs delivered %s  (victims already finished: %s)\n' \
  "$procs" "$rounds" "$builds" "$kills" "$missed"
printf 'succeeded %s  unexpected failures %s  corruptions %s  time %.1fs\n' \
  "$ok" "$failures" "$corruptions" "$elapsed"
printf 'records before prune %s  du total %s  on disk %s bytes  records after prune --all %s\n' \
  "$records" "$reported" "$on_disk" "$left"
[[ $failures -eq 0 && $corruptions -eq 0 && $left -eq 0 ]]
