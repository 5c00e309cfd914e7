#!/usr/bin/env bash
# The agent's throughput figure: `earshot-agent ingest --dry-run` over the generator's one-hour,
# 5-million-line file (200 stations, 50,000 listeners), beside HAProxy's own `halog -u` and
# `halog -srv` over the same file, with peak memory. Usage: scripts/bench-ingest.sh [FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v halog >/dev/null || { echo "halog is in Debian's haproxy package: apt-get install haproxy" >&2; exit 1; }
cargo build --release --quiet -p earshot-loadgen
# The agent exactly as scripts/package.sh builds it: Cargo unifies dependency features per
# build, so building it beside the generator makes a (measurably) different binary.
cargo build --release --quiet -p earshot-agent -p earshot-collector --bins
file=${1:-/tmp/earshot-bench/hour.log}
if [ ! -f "$file" ]; then
    mkdir -p "$(dirname "$file")"
    target/release/earshot-loadgen bench-file --out "$file"
fi
lines=$(wc -l < "$file")
size=$(du -m "$file" | cut -f1)
cat "$file" > /dev/null   # the same page cache for everyone

run() {  # label, command…  → one row: wall s, CPU s, lines per CPU second, peak RSS
    local label=$1; shift
    local out
    out=$(mktemp)
    /usr/bin/time -o "$out" -f "%e %U %S %M" "$@" > /dev/null 2> /dev/null
    read -r wall user sys rss < "$out"
    rm -f "$out"
    python3 - "$label" "$lines" "$wall" "$user" "$sys" "$rss" <<'PY'
import sys
label, lines, wall, user, sys_, rss = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
cpu = user + sys_
print(f"{label:<28} {wall:7.2f} s wall {cpu:7.2f} s CPU {lines / cpu / 1e6:6.2f} M lines/CPU-s {lines / wall / 1e6:6.2f} M lines/s {rss / 1024:7.1f} MB peak")
PY
}
# halog reads the bare line with -s -4 (its default expects a 5-field syslog header).
echo "$lines lines, $size MB: $file"
run "earshot-agent --dry-run" target/release/earshot-agent ingest --dry-run "$file"
run "halog -u"   sh -c "exec halog -s -4 -u < '$file'"
run "halog -srv" sh -c "exec halog -s -4 -srv < '$file'"
