#!/usr/bin/env python3
"""How long a newcomer waits while many clients leave at once.

Opens N text connections to a running server, reads everything they are sent until
the room is quiet, then closes all of them at once and at the same instant connects
two newcomers: the figure is the time from the mass close until newcomer B has
received a line from newcomer A. Standard library only.

    python3 bench/close_at_once.py 127.0.0.1:19400 -c 2000 --runs 3
"""
import argparse
import resource
import selectors
import socket
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(addr):
    s = socket.create_connection(addr)
    # An empty line ends the server's wait for the first bytes and relays nothing.
    s.sendall(b"\n")
    return s


def drain(socks, quiet):
    """Reads every socket until none has received anything for `quiet` seconds."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    buf = bytearray(1 << 16)
    last = time.monotonic()
    while time.monotonic() - last < quiet:
        for key, _ in sel.select(timeout=quiet):
            try:
                if key.fileobj.recv_into(buf) > 0:
                    last = time.monotonic()
            except BlockingIOError:
                pass
    sel.close()


def read_until(s, needle, deadline):
    got = b""
    s.settimeout(max(0.001, deadline - time.monotonic()))
    while needle not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("newcomer's connection closed")
        got += chunk
    return got


def run(addr, count):
    socks = [connect(addr) for _ in range(count)]
    drain(socks, quiet=1.0)
    closed_at = time.monotonic()
    for s in socks:
        s.close()
    a, b = connect(addr), connect(addr)
    deadline = closed_at + 30
    read_until(a, b"welcome", deadline)
    read_until(b, b"welcome", deadline)
    line = b"newcomer-%d" % time.monotonic_ns()
    a.sendall(line + b"\n")
    read_until(b, line, deadline)
    took = time.monotonic() - closed_at
    a.close()
    b.close()
    return took


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("addr")
    p.add_argument("-c", "--connections", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    host, port = args.addr.rsplit(":", 1)
    raise_nofile()
    for i in range(args.runs):
        took = run((host, int(port)), args.connections)
        print(f"run {i + 1}: {args.connections} closed at once; "
              f"a newcomer's line reached another after {took * 1000:.0f} ms", flush=True)
        time.sleep(2)


if __name__ == "__main__":
    main()
