#!/bin/sh
# Fan-out and latency of two server builds side by side: for each of PAIRS pairs
# (default 3), starts A then B on a free loopback port and runs on each the
# README's commands (fanout N=100 and N=1000 with S=10, latency at 1,000 msg/s to
# 100), printing one line per run. Extra arguments go to `host-client bench` (for
# example --text).
#
#   bench/pairs.sh /tmp/base/host-server target/release/host-server 3 --text
set -eu
a=$1; b=$2; pairs=${3:-3}
shift 2; [ $# -gt 0 ] && shift
client=${CLIENT:-target/release/host-client}
run() {
    server=$1; label=$2; shift 2
    out=$(mktemp)
    "$server" --bind 127.0.0.1:0 >"$out" 2>/dev/null </dev/null &
    pid=$!
    while ! grep -q '^listening on' "$out"; do sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$out")
    for scenario in "fanout -n 100 -s 10 -m 5000" "fanout -n 1000 -s 10 -m 2000" \
        "latency -n 100 -r 1000 -t 10s"; do
        # shellcheck disable=SC2086
        report=$("$client" bench $scenario "$@" --server-pid "$pid" "$addr")
        rate=$(echo "$report" | sed -n 's/.*: \([0-9.]*\) deliveries\/s.*/\1/p' | head -1)
        p99=$(echo "$report" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' | head -1)
        cpu=$(echo "$report" | sed -n 's/.*cpu .*while measuring, \([0-9]*\)% of one core.*/\1/p' | tr '\n' '/')
        echo "$label | $scenario | $rate deliveries/s | p99 $p99 ms | bench/server CPU ${cpu%/}%"
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$out"
}
i=1
while [ $i -le "$pairs" ]; do
    run "$a" "pair $i A" "$@"
    run "$b" "pair $i B" "$@"
    i=$((i + 1))
done
