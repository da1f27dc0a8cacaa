#!/usr/bin/env bash
# The explain benchmark: bench/explain/gen.py's inputs, each explained by each BINARY under
# GNU time (apt-get install time): wall seconds, peak RSS, exit code.
#
#   bench/explain/run.sh [BINARY...]      # default: target/release/kubectl-realip
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$#" -eq 0 ]; then
  set -- target/release/kubectl-realip
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/explain/gen.py "$dir"
printf '%-44s %-13s %9s %14s %5s\n' binary input seconds 'peak RSS (KB)' exit
for bin in "$@"; do
  for input in big scalars nested; do
    code=0
    /usr/bin/time -f '%e %M' -o "$dir/time" "$bin" explain -o json -f "$dir/$input.yaml" \
      >/dev/null 2>"$dir/stderr" || code=$?
    read -r seconds rss < <(tail -n 1 "$dir/time")
    printf '%-44s %-13s %9s %14s %5s\n' "$bin" "$input.yaml" "$seconds" "$rss" "$code"
  done
done
