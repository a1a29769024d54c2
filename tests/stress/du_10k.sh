#!/usr/bin/env bash
# Times `bk du` on a store with N cache records (default 10,000).
#
#   tests/stress/du_10k.sh [N]
#
# A real build creates the store (schema, layout); python3's sqlite3 then
# adds N records, each with a snapshot directory holding one file of its
# own and a hard link to a file shared by all (as a chain of COPY steps
# leaves them), so that du has to tell private from shared bytes.
set -euo pipefail
n=${1:-10000}
here=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
bk=${BK:-$target/release/bk}
[[ -x $bk ]] || bk=$target/debug/bk
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export BK_ROOT=$work/root XDG_CONFIG_HOME=$work/config
mkdir -p "$work/ctx"
echo seed >"$work/ctx/f"
printf 'FROM scratch\nCOPY f /f\n' >"$work/ctx/Dockerfile"
"$bk" build --progress=plain -o "$work/out" "$work/ctx" 2>/dev/null
python3 - "$BK_ROOT" "$n" <<'PY'
import os, sqlite3, sys, hashlib, time
root, n = sys.argv[1], int(sys.argv[2])
snaps = os.path.join(root, "snapshots")
shared = os.path.join(root, "shared-file")
with open(shared, "wb") as f:
    f.write(os.urandom(64 * 1024))
db = sqlite3.connect(os.path.join(root, "cache.db"))
now = int(time.time() * 1000)
rows, parent = [], None
for i in range(n):
    sid = hashlib.sha256(b"snap%d" % i).hexdigest()[:32]
    d = os.path.join(snaps, sid)
    os.mkdir(d)
    os.link(shared, os.path.join(d, "shared"))
    with open(os.path.join(d, "own"), "wb") as f:
        f.write(b"x" * (100 + i % 5000))
    key = "sha256:" + hashlib.sha256(b"key%d" % i).hexdigest()
    rows.append((key, sid, "[%d/%d] COPY own /own" % (i, n), 8192, now - i * 1000, now - i * 1000, i % 7, "regular", parent))
    parent = sid
db.executemany("INSERT INTO results (cache_key, snapshot_id, description, size, created_at, last_used_at, usage_count, record_type, parent_snapshot) VALUES (?,?,?,?,?,?,?,?,?)", rows)
db.commit()
os.unlink(shared)
PY
echo "records: $("$bk" du | awk 'NR > 1 && $0 == "" {exit} NR > 1 {n++} END {print n + 0}')"
for args in "du" "du --verbose" "du --filter type=regular --filter description~=COPY"; do
  s=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$bk" $args >/dev/null
  printf '%-55s %.2fs\n' "bk $args" "$(echo "$(date +%s.%N) - $s" | bc)"
done
"$bk" du | tail -5
s=$(date +%s.%N)
"$bk" cache prune -f --keep-storage 100MB | tail -1
printf '%-55s %.2fs\n' "bk cache prune -f --keep-storage 100MB" "$(echo "$(date +%s.%N) - $s" | bc)"
