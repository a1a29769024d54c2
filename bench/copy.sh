#!/usr/bin/env bash
# Measures bk's COPY path against cp -a in one run and prints ratios:
#   1. COPY of one 512 MiB file (FROM scratch, -o DIR), cold store
#   2. COPY of 50,000 small files, cold store
#   3. a warm no-op rebuild of a 30-step FROM scratch Dockerfile
# Usage: bench/copy.sh [path-to-bk]   (default: bk on PATH)
# Needs: GNU coreutils, python3 (for timing). Scratch space: ~2 GiB in $TMPDIR.
set -euo pipefail

BK=${1:-bk}
command -v "$BK" >/dev/null || { echo "bench/copy.sh: $BK not found (run ./install.sh)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
drop() { sync; }

# --- inputs --------------------------------------------------------------
mkdir -p "$work/big" "$work/small/files"
head -c $((512 * 1024 * 1024)) /dev/urandom > "$work/big/blob"
printf 'FROM scratch\nCOPY blob /blob\n' > "$work/big/Dockerfile"
python3 - "$work/small/files" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    sub = os.path.join(root, f"d{d:03}")
    os.makedirs(sub)
    for f in range(500):
        with open(os.path.join(sub, f"f{f:03}.txt"), "w") as fh:
            fh.write(f"file {d}/{f}\n" * 4)
PY
printf 'FROM scratch\nCOPY files /files\n' > "$work/small/Dockerfile"

mkdir -p "$work/steps"
{
  echo "FROM scratch"
  for i in $(seq 1 10); do
    echo "step $i" > "$work/steps/f$i.txt"
    echo "COPY f$i.txt /data/f$i.txt"
    echo "ENV STEP$i=$i"
    echo "WORKDIR /w$i"
  done
} > "$work/steps/Dockerfile"

# --- 1. one big file -----------------------------------------------------
drop; t0=$(now); cp -a "$work/big/blob" "$work/cp-big"; t1=$(now)
cp_big=$(elapsed "$t0" "$t1")
drop; t0=$(now)
BK_ROOT="$work/root-big" "$BK" build --progress=quiet -o "$work/out-big" "$work/big"
t1=$(now); bk_big=$(elapsed "$t0" "$t1")
cmp -s "$work/big/blob" "$work/out-big/blob" || { echo "big file output differs" >&2; exit 1; }

# --- 2. many small files -------------------------------------------------
drop; t0=$(now); cp -a "$work/small/files" "$work/cp-small"; t1=$(now)
cp_small=$(elapsed "$t0" "$t1")
drop; t0=$(now)
BK_ROOT="$work/root-small" "$BK" build --progress=quiet -o "$work/out-small" "$work/small"
t1=$(now); bk_small=$(elapsed "$t0" "$t1")
diff -r "$work/small/files" "$work/out-small/files" >/dev/null || { echo "small files output differs" >&2; exit 1; }

# --- 3. warm no-op rebuild ----------------------------------------------
BK_ROOT="$work/root-steps" "$BK" build --progress=quiet "$work/steps" 2>/dev/null
t0=$(now)
BK_ROOT="$work/root-steps" "$BK" build --progress=quiet "$work/steps" 2>/dev/null
t1=$(now); warm=$(elapsed "$t0" "$t1")

echo
echo "bk COPY benchmark ($(nproc) cores, $(uname -r))"
printf '%-34s %9s %9s %9s\n' "case" "cp -a s" "bk s" "bk/cp"
printf '%-34s %9s %9s %9s\n' "COPY 512 MiB file (cold store)" "$cp_big" "$bk_big" "$(ratio "$bk_big" "$cp_big")"
printf '%-34s %9s %9s %9s\n' "COPY 50,000 small files (cold)" "$cp_small" "$bk_small" "$(ratio "$bk_small" "$cp_small")"
printf '%-34s %9s\n' "warm no-op rebuild, 30 steps (s)" "$warm"
