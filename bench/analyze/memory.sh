#!/usr/bin/env bash
# Peak memory of `kubectl-realip analyze` by output format and window: a burst capture (every
# connection inside one window) and a long one (a connection every 2 ms on average for about 33
# minutes), so that what grows with the window and what grows with the capture show apart.
#
# Usage: bench/analyze/memory.sh [BURST_CONNECTIONS] [LONG_CONNECTIONS]
set -euo pipefail
burst=${1:-200000}
long=${2:-1000000}
source "$(dirname "$0")/build.sh"
gen "$work/burst.pcapng" "$burst"
gen "$work/long.pcapng" "$long" 2000

run() { # CAPTURE FORMAT WINDOW
    /usr/bin/time -o "$work/time" -f '%e %M' "$plugin" analyze -o "$2" --window "$3" "$work/$1.pcapng" > /dev/null
    read -r s kb < "$work/time"
    printf '%-6s %-8s %-7s %6.2f s  %8d KB peak RSS\n' "$1" "$2" "$3" "$s" "$kb"
}
for format in json text mermaid; do run burst "$format" 3m; done
for window in 10s 1m 3m 10m; do run long json "$window"; done
