#!/bin/sh
# Fan-out of the chat server against Redis pub/sub in one run: for each of ROUNDS
# rounds (default 3), starts a host-server and a redis-server (nothing kept on disk)
# on free loopback ports and runs, alternating, fanout N=100 (M=5000) and N=1000
# (M=2000) with S=10 against our server in binary mode, in text mode, and against
# Redis with --redis-pubsub, each with --server-pid. Prints one line per run: the
# load average before it, deliveries/s, the server's CPU per delivery and the share
# of a core the bench and the server used.
#
#   bench/redis_pairs.sh target/release/host-server 3
set -eu
server=$1; rounds=${2:-3}
client=${CLIENT:-target/release/host-client}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
field() {
    echo "$2" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"
}
# (sh has no local variables: the names here are the function's own.)
run() {
    run_label=$1; run_pid=$2; run_addr=$3; shift 3
    run_load=$(cut -d' ' -f1-3 /proc/loadavg)
    report=$("$client" bench "$@" --json --server-pid "$run_pid" "$run_addr")
    printf '%s | %s | load %s | %.2f M deliveries/s | %.0f ns server CPU per delivery | bench/server %.0f/%.0f%% | lost %s\n' \
        "$run_label" "$*" "$run_load" "$(echo "$(field deliveries_per_s "$report") / 1000000" | bc -l)" \
        "$(field server_cpu_ns_per_delivery "$report")" \
        "$(echo "100 * $(field bench_busy "$report")" | bc -l)" \
        "$(echo "100 * $(field server_busy "$report")" | bc -l)" \
        "$(field lost "$report")"
}
ours=; redis=
# A failed run stops the script (set -e): the servers of its round go with it.
trap 'kill $ours $redis 2>/dev/null || true' EXIT
i=1
while [ "$i" -le "$rounds" ]; do
    out=$(mktemp)
    "$server" --bind 127.0.0.1:0 >"$out" 2>/dev/null </dev/null &
    ours=$!
    while ! grep -q '^listening on' "$out"; do sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$out")
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no >/dev/null </dev/null &
    redis=$!
    while ! redis-cli -p "$port" PING 2>/dev/null | grep -q PONG; do sleep 0.1; done
    for load in "-n 100 -s 10 -m 5000" "-n 1000 -s 10 -m 2000"; do
        # shellcheck disable=SC2086
        run "round $i ours binary" "$ours" "$addr" fanout $load
        # shellcheck disable=SC2086
        run "round $i ours text  " "$ours" "$addr" fanout --text $load
        # shellcheck disable=SC2086
        run "round $i redis      " "$redis" "127.0.0.1:$port" fanout --redis-pubsub $load
    done
    kill "$ours" "$redis"; wait "$ours" "$redis" 2>/dev/null || true
    ours=; redis=
    rm -f "$out"
    i=$((i + 1))
done
