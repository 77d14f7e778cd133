#!/usr/bin/env bash
# Builds the Debian package with cargo-deb:
#   ./scripts/build-deb.sh        -> target/debian/pgsql-state_<version>_<arch>.deb
# Installs cargo-deb when missing (cargo install), builds the release
# binary, generates the man pages and completions from the clap definitions
# (examples/package_assets.rs), and packages. Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION (cargo install)" >&2
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
command -v gzip >/dev/null || { echo "build-deb: gzip is missing" >&2; exit 1; }

cargo build --locked --release
assets=target/package-assets
rm -rf "$assets"
cargo run --locked --quiet --example package_assets -- "$assets"
# Man pages ship compressed, without timestamps, as Debian wants them.
gzip -9n "$assets"/man/*.1
cargo deb --no-build --locked --quiet >/dev/null
ls -t target/debian/pgsql-state_*.deb | head -1
