#!/usr/bin/env bash
# Builds the earshot-agent and earshot-collector packages, each as .deb and .rpm, into
# target/packages/. The one documented way to make them:
#
#     scripts/package.sh
#
# Installs cargo-deb and cargo-generate-rpm (cargo install --locked) when missing, builds the
# release binaries, strips them, checks that they need nothing beyond the glibc baseline the
# packages declare, and packs. The packages run on the glibc they were built against and newer
# (see GLIBC_BASELINE below and packaging/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# The packages' declared `libc6 (>= …)` / `glibc >= …` (agent/Cargo.toml, collector/Cargo.toml).
# A build that needs a newer glibc symbol fails here instead of making a package that installs
# and then cannot start.
GLIBC_BASELINE=2.34
BINS=(earshot-agent earshot-collector)
OUT=target/packages
STAGE=$OUT/stage

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
command -v cargo-generate-rpm >/dev/null 2>&1 || cargo install --locked cargo-generate-rpm

cargo build --release -p earshot-agent -p earshot-collector --bins

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
rm -rf "$OUT"
mkdir -p "$STAGE"
for bin in "${BINS[@]}"; do
    strip --strip-all -o "$STAGE/$bin" "$target_dir/release/$bin"
    # Only glibc and libgcc_s, which the packages depend on.
    extra=$(readelf -d "$STAGE/$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' |
        grep -v -E '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64|ld-linux-aarch64)\.so\.[0-9]+$' || true)
    if [ -n "$extra" ]; then
        echo "package.sh: $bin needs libraries the packages do not declare: $extra" >&2
        exit 1
    fi
    newest=$(objdump -T "$STAGE/$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
    if [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_BASELINE" | sort -V | tail -n1)" != "$GLIBC_BASELINE" ]; then
        echo "package.sh: $bin needs glibc $newest, newer than the declared baseline $GLIBC_BASELINE" >&2
        exit 1
    fi
    echo "$bin: stripped, needs glibc >= $newest (declared >= $GLIBC_BASELINE)"
done

for bin in "${BINS[@]}"; do
    # cargo-deb packs target/release/BIN, stripping it itself (--strip); cargo-generate-rpm packs
    # the stripped copy in $STAGE (its asset list says so).
    cargo deb --no-build --strip -p "$bin" --output "$OUT/"
    # -p takes the crate's directory; asset paths are relative to it.
    cargo generate-rpm -p "${bin#earshot-}" --target-dir "$target_dir" -o "$OUT/"
done
rm -rf "$STAGE"
ls -l "$OUT"
