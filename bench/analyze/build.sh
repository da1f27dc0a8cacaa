# Sourced by the analyze benchmarks: a scratch directory removed on exit, the release plugin
# ($plugin) and a capture generator (gen OUT.pcapng CONNECTIONS [MEAN_GAP_US]).
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"
cargo build -q --release --example analyze-bench-gen --bin kubectl-realip
target=${CARGO_TARGET_DIR:-$root/target}
plugin="$target/release/kubectl-realip"
gen() { "$target/release/examples/analyze-bench-gen" "$@"; }
