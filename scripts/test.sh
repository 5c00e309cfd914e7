#!/usr/bin/env bash
# Runs every earshot test. Installs what the tests need first: Debian's haproxy, icecast2 and
# ffmpeg (the end-to-end tests run the real programs) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v icecast2 >/dev/null 2>&1 || need+=(icecast2)
# Real HLS and Icecast clients (tests/e2e/real_clients.rs) and the segments they play.
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# Builds the small GeoIP database the country test uses.
perl -MMaxMind::DB::Writer::Tree -e1 >/dev/null 2>&1 || need+=(libmaxmind-db-writer-perl)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} from Debian's packages"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
    # The packages start system services; the tests run their own instances.
    $sudo_cmd systemctl stop haproxy icecast2 >/dev/null 2>&1 || true
fi

# The packages: built, installed with dpkg, checked, run by hand, purged (needs root).
if [ "$(id -u)" -eq 0 ]; then
    scripts/package-test.sh
else
    echo "package test skipped: it installs packages and needs root"
fi

# The end-to-end tests run the real binaries.
cargo build --workspace --bins
cargo test --workspace --lib --bins --tests -- --test-threads 2
