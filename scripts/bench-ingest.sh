#!/usr/bin/env bash
# The agent's throughput figure: `earshot-agent ingest --dry-run` over the generator's one-hour,
# 5-million-line file (200 stations, 50,000 listeners), beside HAProxy's own `halog -u` and
# `halog -srv` over the same file, with peak memory. Three files: the classic layout's bare
# HAProxy lines (`log stdout format raw`, 1.3 GB), the same lines as Debian 12's rsyslog files
# them (RFC 3339 timestamp, host and tag before each, 1.6 GB), and the mixed layouts (Icecast,
# AzuraCast, Wowza, nginx-rtmp, CMAF, CDN stations; `--layouts mixed`). Then one run over each
# attack file (1 M lines of one tenant where a field is new on every line): the agent's peak
# memory and the wire bytes of what it would ship.
# Usage: scripts/bench-ingest.sh [RAW-FILE [RSYSLOG-FILE [MIXED-FILE]]]
# Environment: RUNS (3), LINES (5000000), STATIONS (200), LISTENERS (50000),
# ATTACK_LINES (1000000), ATTACK_TIMEOUT (600 s per attack run), BENCH_DIR (/tmp/earshot-bench);
# a smaller LINES for a quick try.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v halog >/dev/null || { echo "halog is in Debian's haproxy package: apt-get install haproxy" >&2; exit 1; }
cargo build --release --quiet -p earshot-loadgen
# The agent exactly as scripts/package.sh builds it: Cargo unifies dependency features per
# build, so building it beside the generator makes a (measurably) different binary.
cargo build --release --quiet -p earshot-agent -p earshot-collector --bins
lines_target=${LINES:-5000000}
stations=${STATIONS:-200}
listeners=${LISTENERS:-50000}
attack_lines=${ATTACK_LINES:-1000000}
attack_timeout=${ATTACK_TIMEOUT:-600}
dir=${BENCH_DIR:-/tmp/earshot-bench}
# The default size keeps its old file names; other sizes get their own.
suffix=""
[ "$lines_target" = 5000000 ] && [ "$stations" = 200 ] && [ "$listeners" = 50000 ] \
    || suffix="-$lines_target-$stations-$listeners"
raw=${1:-$dir/hour$suffix.log}
rsyslog=${2:-$dir/hour-rsyslog$suffix.log}
mixed=${3:-$dir/hour-mixed$suffix.log}
for spec in "$raw raw classic" "$rsyslog rsyslog classic" "$mixed raw mixed"; do
    set -- $spec
    if [ ! -f "$1" ]; then
        mkdir -p "$(dirname "$1")"
        target/release/earshot-loadgen bench-file --envelope "$2" --layouts "$3" \
            --lines "$lines_target" --stations "$stations" --listeners "$listeners" --out "$1"
        sync   # not measured: the writeback of what was just written
    fi
done

# The machine's speed can drift from one minute to the next: RUNS rounds (default 3), each
# running the three programs back to back, and a last row with each one's median.
runs=${RUNS:-3}
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run() {  # label, lines, command…  → one row: wall s, CPU s, lines per CPU second, peak RSS
    local label=$1 lines=$2; shift 2
    local out
    out=$(mktemp)
    /usr/bin/time -o "$out" -f "%e %U %S %M" "$@" > /dev/null 2> /dev/null
    read -r wall user sys rss < "$out"
    rm -f "$out"
    echo "$label|$lines|$wall|$user|$sys|$rss" >> "$results"
    python3 - "$label" "$lines" "$wall" "$user" "$sys" "$rss" <<'PY'
import sys
label, lines, wall, user, sys_, rss = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
cpu = user + sys_
print(f"{label:<28} {wall:7.2f} s wall {cpu:7.2f} s CPU {lines / cpu / 1e6:6.2f} M lines/CPU-s {lines / wall / 1e6:6.2f} M lines/s {rss / 1024:7.1f} MB peak")
PY
}

medians() {  # one row per program: median lines per CPU second over the rounds, peak RSS
    python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, lines, wall, user, sys_, rss = line.strip().split("|")
    rows.setdefault(label, []).append((int(lines) / (float(user) + float(sys_)), int(rss)))
for label, runs in rows.items():
    rates = [r for r, _ in runs]
    print(f"{label:<28} median of {len(runs)}: {statistics.median(rates) / 1e6:6.2f} M lines/CPU-s"
          f" (min {min(rates) / 1e6:.2f}, max {max(rates) / 1e6:.2f}), {max(m for _, m in runs) / 1024:.1f} MB peak")
PY
}

# halog's -s says how many fields precede the HAProxy line: -4 for a bare line, -1 for
# rsyslog's three (both give the same -u report on these files).
for pair in "$raw -4" "$rsyslog -1" "$mixed -4"; do
    set -- $pair
    file=$1 skip=$2
    lines=$(wc -l < "$file")
    size=$(du -m "$file" | cut -f1)
    cat "$file" > /dev/null   # the same page cache for everyone
    echo "$lines lines, $size MB: $file"
    : > "$results"
    for _ in $(seq "$runs"); do
        run "earshot-agent --dry-run" "$lines" target/release/earshot-agent ingest --dry-run "$file"
        run "halog -u"   "$lines" sh -c "exec halog -s $skip -u < '$file'"
        run "halog -srv" "$lines" sh -c "exec halog -s $skip -srv < '$file'"
    done
    medians
done

# Attacks: one run each. What matters is that memory and wire bytes stay bounded however many
# values one field takes (the agent keeps max_streams streams and max_values values per
# dimension and hour, and folds the rest into `(other)`).
echo "attack files, $attack_lines lines each: agent peak memory, wire bytes, sessions (truth)"
for kind in random-mounts random-source random-referer random-ua random-ip; do
    file=$dir/attack-$kind-$attack_lines.log
    truth=$dir/attack-$kind-$attack_lines.json
    if [ ! -f "$file" ] || [ ! -f "$truth" ]; then
        mkdir -p "$dir"
        target/release/earshot-loadgen attack --kind "$kind" --lines "$attack_lines" \
            --out "$file" --truth "$truth" > /dev/null
    fi
    cat "$file" > /dev/null
    out=$(mktemp) report=$(mktemp)
    # An attack that makes the agent crawl must not stall the benchmark: cut it at
    # ATTACK_TIMEOUT and say so (the peak memory is then the peak until then).
    status=0
    /usr/bin/time -o "$out" -f "%e %U %S %M" timeout "$attack_timeout" \
        target/release/earshot-agent ingest --dry-run "$file" > "$report" 2> /dev/null || status=$?
    python3 - "$kind" "$out" "$report" "$truth" "$status" "$attack_timeout" <<'PY'
import json, sys
kind, timing, report, truth, status, limit = sys.argv[1:]
wall, user, sys_, rss = map(float, open(timing).read().split()[-4:])
if status != "0":
    print(f"{kind:<16} did not finish: exit {status} after {wall:.0f} s (limit {limit} s),"
          f" {user + sys_:.0f} s CPU, {rss / 1024:.1f} MB peak so far")
    sys.exit(0)
r = json.load(open(report))
t = json.load(open(truth))
a = r["tenants"].get(t["tenant"], {})
print(f"{kind:<16} {t['lines'] / (user + sys_) / 1e6:6.2f} M lines/CPU-s {rss / 1024:7.1f} MB peak"
      f" {r['wire_bytes'] / 1024:9.1f} KiB wire  sessions {a.get('sessions', 0)} of {t['qualifying_sessions']}"
      f" ({t['distinct_values']} distinct {t['field']}, {a.get('streams', 0)} streams kept)")
PY
    rm -f "$out" "$report"
done
