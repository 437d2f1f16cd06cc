#!/bin/sh
# Threads and memory per idle client: starts the server binary SERVER on a free
# loopback port, holds N idle text clients with `host-client bench idle` for HOLD
# seconds (default 10), and prints the server's threads and RSS before and while they
# are held, and per client: the bench's own "server rss" line is the RSS at the end of
# the hold, this script's last line the peak. Extra arguments go to the server.
#
#   bench/idle.sh target/release/host-server 2000
#   bench/idle.sh target/release/host-server 10000 20 --max-clients 12000
set -eu
server=$1; count=$2; hold=${3:-10}
shift 2; [ $# -gt 0 ] && shift
client=${CLIENT:-target/release/host-client}
ulimit -n "$(ulimit -Hn)"
out=$(mktemp); err=$(mktemp)
"$server" --bind 127.0.0.1:0 "$@" >"$out" 2>"$err" </dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out" "$err"' EXIT
while ! grep -q '^listening on' "$out"; do sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out")
field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$pid/status"; }
threads0=$(field Threads); rss0=$(field VmRSS)
"$client" bench idle --text -c "$count" -t "${hold}s" --server-pid "$pid" "$addr" &
bench=$!
# The most threads and memory seen while the bench runs: every client is in then.
threads=0; rss=0
while kill -0 $bench 2>/dev/null; do
    t=$(field Threads); r=$(field VmRSS)
    [ "$t" -gt "$threads" ] && threads=$t
    [ "$r" -gt "$rss" ] && rss=$r
    sleep 0.5
done
wait $bench || true
echo "server threads: $threads0 before, $threads with $count clients: $(echo "scale=3; ($threads - $threads0) / $count" | bc) per client"
echo "server RSS at its peak (while connecting, before idle readers give their stack back): $rss0 KiB before, $rss KiB with $count clients: $(echo "scale=2; ($rss - $rss0) / $count" | bc) KiB per client"
