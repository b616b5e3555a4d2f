#!/usr/bin/env bash
# Builds fwdguard's packages into target/dist/: a .deb and an .rpm per architecture and SHA256SUMS.
#
#   packaging/build.sh                        release packages (x86_64; aarch64 too if its Rust
#                                             target is installed: rustup target add aarch64-unknown-linux-gnu)
#   packaging/build.sh --test-deb BIN DIR     a .deb of BIN (the binary `cargo test` built) into
#                                             DIR, for the end-to-end tests: seconds, not minutes
#
# Release binaries are built with cargo-zigbuild against glibc 2.17, so one binary runs on EL7
# and on current distributions; the script checks the newest GLIBC symbol each one needs. Man
# pages and shell completions are generated from the real command line by examples/gen-docs.rs.
# Needs: cargo-zigbuild, cargo-deb, cargo-generate-rpm (cargo install --locked ...), zig
# (pip install ziglang), objdump (binutils), gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

GLIBC_MAX=2.17
ASSETS=target/assets
DIST=target/dist

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'packaging/build.sh: %s\n' "$*" >&2; exit 1; }

# Man pages and completions into target/assets (the paths Cargo.toml's package metadata names).
assets() {
  say "man pages and completions"
  rm -rf "$ASSETS"
  cargo run --locked --quiet --example gen-docs -- "$ASSETS"
  gzip -9n "$ASSETS"/man/man*/*
}

# Fails unless the binary needs at most glibc $GLIBC_MAX.
check_glibc() {
  local bin=$1 newest
  newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
  [ -n "$newest" ] || die "$bin: no GLIBC symbols found (objdump -T)"
  if [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -n 1)" != "$GLIBC_MAX" ]; then
    die "$bin needs GLIBC_$newest, newer than $GLIBC_MAX (EL7)"
  fi
  say "$bin: newest glibc symbol GLIBC_$newest (at most $GLIBC_MAX)"
}

if [ "${1:-}" = --test-deb ]; then
  [ $# = 3 ] || die "usage: packaging/build.sh --test-deb BIN DIR"
  [ -x "$2" ] || die "$2 is not an executable"
  assets
  # cargo-deb takes the binary from \$CARGO_TARGET_DIR/release: a directory of its own, so that
  # a release build in target/release is neither used nor overwritten.
  pkg_target=$PWD/target/test-deb
  rm -rf "$pkg_target"
  mkdir -p "$pkg_target/release" "$3"
  cp "$2" "$pkg_target/release/fwdguard"
  CARGO_TARGET_DIR=$pkg_target cargo deb --locked --no-build --no-strip --fast --output "$3" >&2
  exit 0
fi
[ $# = 0 ] || die "unknown arguments: $*"

for tool in cargo-zigbuild cargo-deb cargo-generate-rpm objdump gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (see the comment at the top of this script)"
done
# cargo-zigbuild finds zig on PATH or as the ziglang Python module.
command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1 ||
  die "zig is missing: pip install ziglang"

targets=(x86_64-unknown-linux-gnu)
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  targets+=(aarch64-unknown-linux-gnu)
else
  say "aarch64: not built (rustup target add aarch64-unknown-linux-gnu to build it)"
fi

assets
rm -rf "$DIST"
mkdir -p "$DIST"
for target in "${targets[@]}"; do
  say "$target: cargo zigbuild (glibc $GLIBC_MAX)"
  # Stripped by the linker: the host's strip(1) cannot read an aarch64 binary.
  cargo zigbuild --locked --release --config profile.release.strip=true --bin fwdguard \
    --target "$target.$GLIBC_MAX"
  check_glibc "target/$target/release/fwdguard"
  say "$target: deb"
  cargo deb --locked --no-build --no-strip --target "$target" --output "$DIST"
  say "$target: rpm"
  cargo generate-rpm --target "$target" --payload-compress xz --output "$DIST"
done
(cd "$DIST" && sha256sum -- *.deb *.rpm >SHA256SUMS)
say "packages in $DIST:"
(cd "$DIST" && ls -l -- *.deb *.rpm SHA256SUMS) >&2
