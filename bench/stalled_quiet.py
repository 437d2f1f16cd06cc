#!/usr/bin/env python3
"""A quiet client's latency during a flood with a client that never reads.

In a running server's room: a fast reader that reads everything, a client that never
reads (small receive buffer), a quiet client that says a stamped line every 20 ms,
and a flooder that sends 10 MB of 500-byte lines as fast as the server takes them.
Prints the quiet lines' latency (sent to received by the fast reader): p50, p99, max.
Standard library only.

    python3 bench/stalled_quiet.py 127.0.0.1:19400 --runs 5
"""
import argparse
import socket
import threading
import time

LINES = 20_000
LINE = 500


def flood_lines():
    out = bytearray()
    for k in range(LINES):
        head = b"F%06d " % k
        out += head + b"x" * (LINE - 1 - len(head)) + b"\n"
    return bytes(out)


# Built before the clock starts, so making it takes no time from the measurement.
FLOOD = flood_lines()


def connect(addr, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)
    s.sendall(b"\n")
    got = b""
    while b"\n" not in got:
        got += s.recv(4096)
    return s


def sink(s):
    try:
        while s.recv(1 << 16):
            pass
    except OSError:
        pass


def run(addr):
    reader = connect(addr)
    stalled = connect(addr, rcvbuf=4096)
    quiet = connect(addr)
    flooder = connect(addr)
    for s in (quiet, flooder):
        threading.Thread(target=sink, args=(s,), daemon=True).start()
    time.sleep(0.5)
    stop = threading.Event()
    sent = {}

    def talk():
        i = 0
        while not stop.is_set():
            sent[i] = time.monotonic()
            quiet.sendall(b"Q%06d\n" % i)
            i += 1
            time.sleep(0.02)

    def flood():
        flooder.sendall(FLOOD)

    latencies = []
    talker = threading.Thread(target=talk)
    talker.start()
    flood_thread = threading.Thread(target=flood)
    flood_thread.start()
    last = b"F%06d " % (LINES - 1)
    pending = b""
    done = False
    reader.settimeout(30)
    while not done:
        data = reader.recv(1 << 16)
        if not data:
            raise RuntimeError("the fast reader was disconnected")
        now = time.monotonic()
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            at = line.find(b"] Q")
            if at >= 0:
                latencies.append(now - sent[int(line[at + 3:at + 9])])
            elif last in line:
                done = True
    stop.set()
    talker.join()
    flood_thread.join()
    for s in (reader, stalled, quiet, flooder):
        s.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000
    return len(latencies), pick(0.5), pick(0.99), latencies[-1] * 1000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("addr")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    host, port = args.addr.rsplit(":", 1)
    for i in range(args.runs):
        n, p50, p99, worst = run((host, int(port)))
        print(f"run {i + 1}: {n} quiet lines during the flood: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, max {worst:.1f} ms", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
