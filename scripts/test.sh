#!/usr/bin/env bash
# Runs every earshot check, in steps that each report their own result:
#
#   provision  Debian's haproxy, icecast2, ffmpeg and libmaxmind-db-writer-perl (the end-to-end
#              tests run the real programs) and rustup's clippy and rustfmt, when missing;
#   fmt        cargo fmt --all --check;
#   clippy     cargo clippy --workspace --all-targets -- -D warnings;
#   doc        cargo doc --workspace --no-deps with rustdoc warnings as errors;
#   package    scripts/package-test.sh: the .deb/.rpm built, installed, checked, purged (root
#              only; skipped otherwise);
#   build      cargo build --workspace --all-targets (the end-to-end tests run the binaries;
#              benches and examples must compile too);
#   test       cargo test --workspace --lib --bins --tests.
#
# A failing step does not stop the later ones; the summary at the end lists every step, and the
# exit status is non-zero when any failed. `scripts/test.sh fmt clippy` runs only the steps
# named. Tests that need optional data from outside the repository (the OPAWG user-agent files)
# say SKIPPED on stderr when it is absent, or fail under EARSHOT_REQUIRE_OPTIONAL_DATA=1.
set -uo pipefail
cd "$(dirname "$0")/.."

steps=(provision fmt clippy doc package core build test)
only=("$@")
for name in "${only[@]}"; do
    if ! printf '%s\n' "${steps[@]}" | grep -qx -- "$name"; then
        echo "usage: scripts/test.sh [STEP...], each STEP one of: ${steps[*]}" >&2
        exit 2
    fi
done

results=()
failed=0

# Whether step $1 runs: every step when none is named, else only those named.
chosen() {
    [ ${#only[@]} -eq 0 ] || printf '%s\n' "${only[@]}" | grep -qx -- "$1"
}

# step NAME COMMAND...: runs COMMAND and records how it ended.
step() {
    local name=$1
    shift
    chosen "$name" || return 0
    echo
    echo "==> $name: $*"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        results+=("ok       $name (${took} s)")
    else
        results+=("FAILED   $name (exit $rc, ${took} s)")
        failed=1
    fi
}

skipped() {
    chosen "$1" || return 0
    echo
    echo "==> $1: skipped ($2)"
    results+=("skipped  $1 ($2)")
}

provision() {
    local need=()
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    command -v icecast2 >/dev/null 2>&1 || need+=(icecast2)
    # Real HLS and Icecast clients (tests/e2e/real_clients.rs) and the segments they play.
    command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
    # Builds the small GeoIP database the country test uses.
    perl -MMaxMind::DB::Writer::Tree -e1 >/dev/null 2>&1 || need+=(libmaxmind-db-writer-perl)
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing ${need[*]} from Debian's packages"
        local sudo_cmd=""
        [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null ||
            return 1
        # The packages start system services; the tests run their own instances.
        $sudo_cmd systemctl stop haproxy icecast2 >/dev/null 2>&1 || true
    fi
    if command -v rustup >/dev/null 2>&1; then
        local installed
        installed=$(rustup component list --installed) || return 1
        for component in clippy rustfmt; do
            if ! grep -q "^$component" <<<"$installed"; then
                rustup component add "$component" || return 1
            fi
        done
    fi
    cargo clippy --version && cargo fmt --version
}

step provision provision
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step doc env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps
# The packages: built, installed with dpkg, checked, run by hand, purged.
if [ "$(id -u)" -eq 0 ]; then
    step package scripts/package-test.sh
else
    skipped package "it installs packages and needs root"
fi
# The collector without its `apps` feature (no App Store, Google Play or Matomo clients):
# built, linted and unit-tested. Before `build`, which leaves the default binaries in place.
step core sh -c 'cargo clippy -p earshot-collector --all-targets --no-default-features -- -D warnings &&
    cargo test -p earshot-collector --no-default-features --lib -- --test-threads 2'
step build cargo build --workspace --all-targets
step test cargo test --workspace --lib --bins --tests -- --test-threads 2

echo
echo "==> summary"
printf '  %s\n' "${results[@]}"
exit "$failed"
