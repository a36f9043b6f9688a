#!/usr/bin/env bash
# Builds the release binaries of one commit (default HEAD) from a clean
# `git archive` export, so uncommitted work in the tree is not measured.
# They land in $CARGO_TARGET_DIR/release (default /work/target-bench), with
# BUILT_FROM naming the commit; the bench scripts print it in their results.
#
#   bench/lib/build-commit.sh [REV]
set -euo pipefail
rev=${1:-HEAD}
repo=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
sha=$(git -C "$repo" rev-parse "$rev^{commit}")
# A fixed source dir, so cargo reuses the dependencies' artifacts.
src=${BENCH_SRC_DIR:-/work/bench-src}
rm -rf "$src"; mkdir -p "$src"
git -C "$repo" archive "$sha" | tar -x -C "$src"
(cd "$src" && cargo build --release --locked --workspace --bins)
echo "commit $sha ($(git -C "$repo" log -1 --format=%s "$sha"))" > "$CARGO_TARGET_DIR/release/BUILT_FROM"
echo "built $sha into $CARGO_TARGET_DIR/release"
