#!/usr/bin/env bash
# The packages' proof, as CI runs it: as root on Debian 12, where systemd need not be PID 1.
#
#   1. builds the packages (scripts/package.sh);
#   2. installs both .debs with dpkg -i and checks the files, conffiles, stripped binaries,
#      users, permissions, configs, every subcommand's --help, and the units
#      (`systemd-analyze verify`, `systemd-analyze security --offline=true` at most 2.0);
#   3. checks that the agent's user reads a log given to its group and nothing more;
#   4. enrols an agent the documented way, starts the installed binaries by hand (as their
#      users, with the installed configs, under a stand-in $NOTIFY_SOCKET) and sends one batch
#      through, checked with the API; SIGHUP leaves both running; SIGTERM stops both cleanly;
#   5. reinstalls over the running services and checks that configs and state survive;
#   6. purges and checks that nothing is left;
#   7. inspects the .rpms with rpm -qip, -qlp, --scripts (and --requires, --configfiles).
#
# It changes the machine (packages, users, /etc/earshot): run it on a CI or throwaway machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "package-test.sh: run as root (it installs the packages)" >&2
    exit 1
fi

# Ports picked free at run time; the test sets them in the installed configs.
free_port() {  # a port on 127.0.0.1 that is free now ($1: tcp or udp)
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}
QUIC_PORT=$(free_port udp)
HTTP_PORT=$(free_port tcp)
TENANT=pkgtest
AGENT=pkgtest-agent
LOGDIR=/var/log/earshot-package-test
WORK=$(mktemp -d)
pids=()
failures=0
passes=0

ok() { passes=$((passes + 1)); echo "ok: $*"; }
fail() { failures=$((failures + 1)); echo "FAIL: $*" >&2; }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}

cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK" "$LOGDIR"
    rm -f /etc/earshot/$AGENT.token
    dpkg --purge earshot-agent earshot-collector >/dev/null 2>&1 || true
}
trap cleanup EXIT

need=()
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

scripts/package.sh
deb() { ls target/packages/"$1"_*.deb; }
rpmf() { ls target/packages/"$1"-[0-9]*.rpm; }

# A clean start: an earlier run's packages and files would hide a missing install step.
dpkg --purge earshot-agent earshot-collector >/dev/null 2>&1 || true

echo "== install"
# The collector first: it makes the identity secret, which the agent's postinst gives its group.
dpkg -i "$(deb earshot-collector)" | tee "$WORK/collector-postinst.txt"
dpkg -i "$(deb earshot-agent)" | tee "$WORK/agent-postinst.txt"
check "the collector's postinst says where the certificate is" \
    grep -q "/etc/earshot/collector.crt" "$WORK/collector-postinst.txt"
check "the collector's postinst says how to enrol an agent" \
    grep -q "earshot-collector enroll-agent NAME" "$WORK/collector-postinst.txt"

echo "== files"
for f in /usr/bin/earshot-agent /usr/bin/earshot-collector \
    /etc/earshot/agent.toml /etc/earshot/collector.toml \
    /lib/systemd/system/earshot-agent.service /lib/systemd/system/earshot-collector.service \
    /usr/lib/earshot-agent/maint /usr/lib/earshot-collector/maint \
    /usr/share/doc/earshot-agent/README.md /usr/share/doc/earshot-collector/README.md \
    /usr/share/doc/earshot-agent/examples/haproxy-earshot.cfg \
    /usr/share/doc/earshot-agent/examples/logrotate-haproxy-earshot \
    /usr/share/doc/earshot-agent/examples/rsyslog-haproxy-earshot.conf; do
    check "installed: $f" test -e "$f"
done
check "agent.toml is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' earshot-agent | grep -q /etc/earshot/agent.toml"
check "collector.toml is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' earshot-collector | grep -q /etc/earshot/collector.toml"
for b in earshot-agent earshot-collector; do
    check "$b is stripped (no symbol table, no debug info)" \
        sh -c "! readelf -S /usr/bin/$b | grep -q -E '\.symtab|\.debug_info'"
done

echo "== users and permissions"
mode() { stat -c '%a %U:%G' "$1"; }
expect_mode() { # PATH "MODE USER:GROUP"
    local got
    got=$(mode "$1")
    if [ "$got" = "$2" ]; then ok "$1 is $2"; else fail "$1 is $got, expected $2"; fi
}
for u in earshot-agent earshot-collector; do
    check "system user $u exists" getent passwd "$u"
    check "$u cannot log in" sh -c "getent passwd $u | grep -q -E 'nologin|false'"
    groups=$(id -nG "$u")
    if [ "$groups" = "$u" ]; then ok "$u belongs to its own group only"; else fail "$u groups: $groups"; fi
done
expect_mode /var/lib/earshot-agent "700 earshot-agent:earshot-agent"
expect_mode /var/lib/earshot-collector "700 earshot-collector:earshot-collector"
expect_mode /etc/earshot/collector.crt "644 root:root"
expect_mode /etc/earshot/collector.key "640 root:earshot-collector"
expect_mode /etc/earshot/admin.token "600 root:root"
expect_mode /etc/earshot/identity.secret "640 root:earshot-agent"

echo "== --help"
for sub in run ingest notify check-config; do
    check "earshot-agent $sub --help" /usr/bin/earshot-agent "$sub" --help
done
for sub in run init enroll-agent; do
    check "earshot-collector $sub --help" /usr/bin/earshot-collector "$sub" --help
done

echo "== units"
for u in earshot-agent earshot-collector; do
    unit=/lib/systemd/system/$u.service
    out=$(systemd-analyze verify "$unit" 2>&1 || echo "exit status $?")
    if [ -z "$out" ]; then ok "systemd-analyze verify $u.service is clean"; else fail "systemd-analyze verify $u.service: $out"; fi
    score=$(systemd-analyze security --offline=true "$unit" 2>/dev/null |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
        ok "$u.service exposure $score <= 2.0"
    else
        fail "$u.service exposure ${score:-unknown} > 2.0"
    fi
    check "$u.service is Type=notify" grep -q '^Type=notify' "$unit"
done

echo "== the agent's user reads HAProxy's log and nothing more"
as_user() { # as_user USER COMMAND...: the user's own groups, no capabilities, like the unit
    local u=$1
    shift
    setpriv --reuid="$u" --regid="$u" --init-groups --inh-caps=-all --bounding-set=-all -- "$@"
}
as_agent=(--reuid=earshot-agent --regid=earshot-agent --init-groups --inh-caps=-all --bounding-set=-all)
as_collector=(--reuid=earshot-collector --regid=earshot-collector --init-groups --inh-caps=-all --bounding-set=-all)
mkdir -p "$LOGDIR"
# One 10-minute listen to radio yesterday, as rsyslog writes HAProxy's httplog; the live log
# has been rotated once, so the agent reads haproxy.log.1.
day=$(LC_ALL=C date -u -d '1 day ago' +%d/%b/%Y)
iso=$(date -u -d '1 day ago' +%Y-%m-%d)
printf '%s\n' \
    "Nov 28 10:10:00 streamhost haproxy[4242]: 192.0.2.10:51234 [$day:10:00:00.000] fe_streams be_$TENANT/icecast1 0/0/1/2/600000 200 9600000 - - ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0|https://radio.example/} \"GET /live.mp3 HTTP/1.1\"" \
    >"$LOGDIR/haproxy.log.1"
: >"$LOGDIR/haproxy.log"
printf 'not for the agent\n' >"$LOGDIR/auth.log"
chown root:earshot-agent "$LOGDIR/haproxy.log" "$LOGDIR/haproxy.log.1"
chmod 0640 "$LOGDIR/haproxy.log" "$LOGDIR/haproxy.log.1"
chown root:adm "$LOGDIR/auth.log"
chmod 0640 "$LOGDIR/auth.log"
check "earshot-agent reads a log of its group" as_user earshot-agent cat "$LOGDIR/haproxy.log.1"
for secret in "$LOGDIR/auth.log" /etc/shadow /etc/earshot/admin.token /etc/earshot/collector.key; do
    check "earshot-agent cannot read $secret" sh -c "! setpriv --reuid=earshot-agent --regid=earshot-agent --init-groups cat $secret"
done
check "earshot-collector cannot read the agent's state" sh -c "! setpriv --reuid=earshot-collector --regid=earshot-collector --init-groups ls /var/lib/earshot-agent"

echo "== enrol an agent"
enrol=$(/usr/bin/earshot-collector enroll-agent "$AGENT" --tenants "$TENANT" --token-file "/etc/earshot/$AGENT.token")
echo "$enrol"
check "enroll-agent prints the collector's fingerprint" grep -q "fingerprint = \"sha256:" <<<"$enrol"
check "enroll-agent prints the agent's [collector] table" grep -q "^agent_id = \"$AGENT\"" <<<"$enrol"
if command -v openssl >/dev/null 2>&1; then
    fingerprint=$(openssl x509 -in /etc/earshot/collector.crt -outform DER | sha256sum | cut -d' ' -f1)
    check "the printed fingerprint is the certificate's" grep -q "sha256:$fingerprint" <<<"$enrol"
fi
# What the operator does with the output: the [collector] table goes to the agent, the
# [[agents]] table and the admin token's table to the collector.
agent_block=$(awk '/^\[collector\]/{p=1} /^$/{p=0} p' <<<"$enrol")
agents_block=$(awk '/^\[\[agents\]\]/{p=1} /^$/{p=0} p' <<<"$enrol")
chgrp earshot-agent "/etc/earshot/$AGENT.token"
chmod 0640 "/etc/earshot/$AGENT.token"
{
    echo
    echo "$agents_block"
    echo
    cat /etc/earshot/admin.token.toml
} >>/etc/earshot/collector.toml
sed -i -e "s|^#listen = \"0.0.0.0:4433\"|listen = \"127.0.0.1:$QUIC_PORT\"|" \
    -e "s|^#listen = \"127.0.0.1:8080\"|listen = \"127.0.0.1:$HTTP_PORT\"|" /etc/earshot/collector.toml
# The collector's host name may not resolve here: the agent dials the loopback address.
{
    echo
    sed "s|^address = .*|address = \"127.0.0.1:$QUIC_PORT\"|" <<<"$agent_block"
} >>/etc/earshot/agent.toml
sed -i -e "s|^files = .*|files = [\"$LOGDIR/haproxy.log\"]|" \
    -e 's|^#log_timezone = "UTC"|log_timezone = "UTC"|' /etc/earshot/agent.toml
check "the enrolled agent.toml passes check-config (as earshot-agent)" \
    as_user earshot-agent /usr/bin/earshot-agent check-config --config /etc/earshot/agent.toml

echo "== one batch through the installed binaries"
# A stand-in for systemd's notification socket: records what each service reports.
notify_listener() { # SOCKET LOGFILE
    python3 -u -c '
import os, socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
with open(log, "a") as out:
    while True:
        out.write(s.recv(4096).decode() + "\n")
        out.flush()
' "$1" "$2" &
    pids+=($!)
}
chmod 0755 "$WORK"
for port in "$QUIC_PORT/udp" "$HTTP_PORT/tcp"; do
    if ss -Hln "( sport = :${port%/*} )" | grep -q .; then
        fail "port $port is taken (an earlier run left a collector?): $(ss -Hlnp "( sport = :${port%/*} )")"
    fi
done
notify_listener "$WORK/collector.notify" "$WORK/collector.states"
notify_listener "$WORK/agent.notify" "$WORK/agent.states"
wait_for() { # SECONDS COMMAND...
    local n=$(($1 * 5))
    shift
    while [ $n -gt 0 ]; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
        n=$((n - 1))
    done
    return 1
}
wait_for 10 test -S "$WORK/agent.notify"
wait_for 10 test -S "$WORK/collector.notify"

# setpriv is started directly (not through a shell function) so that $! is the service itself.
NOTIFY_SOCKET=$WORK/collector.notify setpriv "${as_collector[@]}" -- \
    /usr/bin/earshot-collector run --config /etc/earshot/collector.toml 2>"$WORK/collector.log" &
collector_pid=$!
pids+=($collector_pid)
if wait_for 30 grep -q READY=1 "$WORK/collector.states"; then ok "the collector reports READY=1"; else fail "the collector never reported READY=1"; cat "$WORK/collector.log"; fi
check "the collector's /healthz answers" curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz"

NOTIFY_SOCKET=$WORK/agent.notify setpriv "${as_agent[@]}" -- \
    /usr/bin/earshot-agent run --config /etc/earshot/agent.toml 2>"$WORK/agent.log" &
agent_pid=$!
pids+=($agent_pid)
if wait_for 30 grep -q READY=1 "$WORK/agent.states"; then ok "the agent reports READY=1"; else fail "the agent never reported READY=1"; cat "$WORK/agent.log"; fi
# What logrotate's postrotate runs, as root.
check "earshot-agent notify reaches the running agent" \
    /usr/bin/earshot-agent notify --config /etc/earshot/agent.toml "$LOGDIR/haproxy.log"

token=$(cat /etc/earshot/admin.token)
summary() {
    curl -fsS -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$HTTP_PORT/api/v1/tenants/$TENANT/streaming/summary?from=${iso}T00:00:00Z&to=${iso}T23:59:59Z"
}
sessions_seen() { summary | grep -q -E '"sessions": ?1[,}]'; }
if wait_for 60 sessions_seen; then
    ok "the batch went through: the API counts the session"
else
    fail "the API does not count the session: $(summary 2>&1 || true)"
    echo "--- agent log"; cat "$WORK/agent.log"; echo "--- collector log"; cat "$WORK/collector.log"
fi

kill -HUP "$collector_pid" "$agent_pid" || true
sleep 1
check "the collector survives SIGHUP" kill -0 "$collector_pid"
check "the agent survives SIGHUP" kill -0 "$agent_pid"
check "the collector logs the reload" grep -q "configuration reload" "$WORK/collector.log"
check "the agent logs the reload" grep -q "configuration reload" "$WORK/agent.log"

stop() { # PID NAME: SIGTERM, then the unit's TimeoutStopSec (60 s) to exit 0
    local pid=$1 name=$2 n=300
    if ! kill -TERM "$pid" 2>/dev/null; then
        fail "$name was not running when it was to be stopped"
        return
    fi
    while kill -0 "$pid" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.2; n=$((n - 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        fail "$name did not stop within 60 s of SIGTERM"
        return
    fi
    if wait "$pid"; then ok "$name stops cleanly on SIGTERM"; else fail "$name exited $? on SIGTERM"; fi
}
stop "$agent_pid" earshot-agent
stop "$collector_pid" earshot-collector
for s in agent collector; do
    if grep -q STOPPING=1 "$WORK/$s.states"; then
        ok "the $s reported STOPPING=1"
    else
        fail "the $s did not report STOPPING=1; it reported: $(tr '\n' ' ' <"$WORK/$s.states")"
    fi
done

echo "== upgrade over an installed, configured, running system"
setpriv "${as_collector[@]}" -- /usr/bin/earshot-collector run --config /etc/earshot/collector.toml 2>>"$WORK/collector.log" &
collector_pid=$!
pids+=($collector_pid)
wait_for 30 curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" || true
sum_before=$(md5sum /etc/earshot/collector.toml /etc/earshot/agent.toml /etc/earshot/collector.crt /etc/earshot/collector.key /etc/earshot/identity.secret)
spool_before=$(ls /var/lib/earshot-agent)
dpkg -i "$(deb earshot-collector)" "$(deb earshot-agent)" >"$WORK/upgrade.txt" 2>&1 || { cat "$WORK/upgrade.txt"; fail "dpkg -i over the installed packages"; }
check "the running collector survives the upgrade" kill -0 "$collector_pid"
sum_after=$(md5sum /etc/earshot/collector.toml /etc/earshot/agent.toml /etc/earshot/collector.crt /etc/earshot/collector.key /etc/earshot/identity.secret)
if [ "$sum_before" = "$sum_after" ]; then ok "the upgrade keeps the changed configs, the certificate and the secrets"; else fail "the upgrade changed configs or secrets"; fi
check "the upgrade keeps the agent's state" test "$spool_before" = "$(ls /var/lib/earshot-agent)"
check "the upgrade keeps the collector's database" test -s /var/lib/earshot-collector/earshot.db
stop "$collector_pid" earshot-collector
setpriv "${as_collector[@]}" -- /usr/bin/earshot-collector run --config /etc/earshot/collector.toml 2>>"$WORK/collector.log" &
collector_pid=$!
pids+=($collector_pid)
if wait_for 30 sessions_seen; then ok "the upgraded collector still has the data"; else fail "the data is gone after the upgrade"; fi
stop "$collector_pid" earshot-collector

echo "== purge"
rm -f "/etc/earshot/$AGENT.token"
dpkg --purge earshot-agent earshot-collector >/dev/null
for gone in /usr/bin/earshot-agent /usr/bin/earshot-collector /etc/earshot \
    /var/lib/earshot-agent /var/lib/earshot-collector \
    /lib/systemd/system/earshot-agent.service /lib/systemd/system/earshot-collector.service; do
    check "purged: $gone" test ! -e "$gone"
done

echo "== rpm"
for p in earshot-agent earshot-collector; do
    f=$(rpmf "$p")
    info=$(rpm -qip "$f")
    check "rpm -qip $p: name" grep -q "^Name *: $p" <<<"$info"
    check "rpm -qip $p: license" grep -q "^License *: MIT OR Apache-2.0" <<<"$info"
    files=$(rpm -qlp "$f")
    for want in "/usr/bin/$p" "/usr/lib/systemd/system/$p.service" "/usr/lib/$p/maint" \
        "/etc/earshot/${p#earshot-}.toml" "/usr/share/doc/$p/README.md"; do
        check "rpm -qlp $p: $want" grep -qx "$want" <<<"$files"
    done
    check "rpm --configfiles $p: /etc/earshot/${p#earshot-}.toml" \
        sh -c "rpm -qp --configfiles '$f' | grep -qx /etc/earshot/${p#earshot-}.toml"
    scripts=$(rpm -qp --scripts "$f")
    check "rpm --scripts $p: postinstall configures" grep -q "/usr/lib/$p/maint configure" <<<"$scripts"
    check "rpm --scripts $p: preuninstall stops on erase" grep -q "/usr/lib/$p/maint remove" <<<"$scripts"
    check "rpm --requires $p: glibc >= 2.34" sh -c "rpm -qp --requires '$f' | grep -q 'glibc >= 2.34'"
done

echo
echo "package-test: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
