#!/usr/bin/env bash
# earshot end to end on generated traffic: two streaming hosts' HAProxy logs, two agents
# shipping over real QUIC to one collector, and the collector's API answering.
# Usage: scripts/demo.sh [--keep]   (--keep leaves the collector running for you to query)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

echo "==> building earshot"
cargo build --quiet --workspace --bins
bin=target/debug

demo=$(mktemp -d /tmp/earshot-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
quic=127.0.0.1:$(free_port)
http=127.0.0.1:$(free_port)

echo "==> generating 3 hours of HAProxy logs for 2 hosts and 6 stations in $demo/logs"
$bin/earshot-loadgen generate --out "$demo/logs" --hosts 2 --hours 3 --stations 6 --listeners 3000 \
    --seed 7 --start 2026-11-27T22:00:00Z --truth "$demo/truth.json" >/dev/null

echo "==> setting up a collector and two agents in $demo"
$bin/earshot-collector init --dir "$demo" --quic-listen "$quic" --http-listen "$http" --agents 2 >/dev/null
$bin/earshot-collector run --config "$demo/collector.toml" 2>"$demo/collector.log" &
collector=$!
cleanup() { if ! $keep; then kill "$collector" 2>/dev/null || true; fi; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://$http/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> two agents ingest their host's rotated logs and ship them over QUIC"
# host-N's rotated files, oldest first (haproxy.log.5 … haproxy.log.1, haproxy.log).
oldest_first() { (cd "$1" && ls haproxy.log* | sort -t. -k3,3nr | sed "s|^|$1/|"); }
$bin/earshot-agent ingest --config "$demo/agent.toml" $(oldest_first "$demo/logs/host-1") 2>"$demo/agent-1.log" &
agent1=$!
$bin/earshot-agent ingest --config "$demo/agent-2.toml" $(oldest_first "$demo/logs/host-2") 2>"$demo/agent-2.log" &
agent2=$!
wait $agent1 $agent2

token=$(cat "$demo/admin.token")
api() { curl -fsS -H "Authorization: Bearer $token" "http://$http/api/v1/$1"; }
# The whole time the logged sessions cover (long sessions began before the first log line).
read -r from to < <(python3 -c '
import json, sys, datetime
a, b = json.load(open(sys.argv[1]))["all_time"]
f = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print(f(a), f(b))' "$demo/truth.json")
echo
echo "==> the collector's numbers next to the generator's ground truth ($from .. $to)"
api tenants | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["tenants"]))' | while read -r t; do
    summary=$(api "tenants/$t/streaming/summary?from=$from&to=$to")
    python3 - "$demo/truth.json" "$t" "$summary" <<'PY'
import json, sys
truth = json.load(open(sys.argv[1]))["per_tenant"].get(sys.argv[2], {})
got = json.loads(sys.argv[3])
print(f"{sys.argv[2]:>10}  sessions {got['sessions']:>6} (truth {truth.get('sessions','?'):>6})"
      f"  listeners {got['unique_listeners']:>5} (truth {truth.get('unique_listeners','?'):>5})"
      f"  hours {got['listening_seconds']/3600:>8.1f} (truth {truth.get('listening_seconds',0)/3600:>8.1f})"
      f"  peak {got['peak_concurrent']:>4} (truth {truth.get('peak_concurrent','?'):>4})")
PY
done
echo
echo "==> one station's listening by hour of day in India (+05:30)"
t=$(api tenants | python3 -c 'import json,sys; print(json.load(sys.stdin)["tenants"][0])')
api "tenants/$t/streaming/by-hour?from=$from&to=$to&tz=%2B05:30" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["rows"]:
    if r["listening_seconds"]:
        print("  %02d:00  %8.1f h  %5d listeners" % (r["hour"], r["listening_seconds"] / 3600, r["unique_listeners"]))'
echo
if $keep; then
    echo "The collector keeps running (pid $collector). Try:"
    echo "  curl -H 'Authorization: Bearer $token' 'http://$http/api/v1/tenants/$t/streaming/summary?from=$from&to=$to'"
else
    echo "Files are in $demo (run with --keep to leave the collector running)."
fi
