#!/usr/bin/env python3
"""Half-open TCP flood for tests: keeps COUNT connections open to each PORT on 127.0.0.1 from
SOURCE (another loopback address), never starting TLS, and opens a new one whenever one is
closed, for SECONDS. Prints how many connections it opened and how many the other side closed.

    half_open.py SOURCE SECONDS COUNT PORT [PORT ...]
"""
import errno
import resource
import selectors
import socket
import sys
import time

# Linux: leave the source port to connect(), which picks one in constant time. A bind() to
# port 0 searches the whole port space of the address, about a millisecond per call with
# thousands in use: the attacker would spend most of the machine's CPU on its own binds and
# the test would measure that instead of the replicas' defence.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def main():
    source, seconds, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    ports = [int(p) for p in sys.argv[4:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    count = min(count, max(1, (hard - 64) // len(ports)))
    sel = selectors.DefaultSelector()
    live = {p: 0 for p in ports}
    opened = closed = 0

    def open_one(port):
        nonlocal opened
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            s.connect_ex(("127.0.0.1", port))
        except OSError:
            s.close()
            return False
        sel.register(s, selectors.EVENT_READ, port)
        live[port] += 1
        opened += 1
        return True

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for port in ports:
            # Refill, a bounded burst per round so that reading keeps up.
            for _ in range(min(200, count - live[port])):
                if not open_one(port):
                    break
        for key, _ in sel.select(timeout=0.05):
            s, port = key.fileobj, key.data
            try:
                data = s.recv(4096)
            except OSError as e:
                data = b"" if e.errno != errno.EAGAIN else None
            if data == b"":
                sel.unregister(s)
                s.close()
                live[port] -= 1
                closed += 1
    print("half_open: opened %d connections, %d closed by the replicas" % (opened, closed))


if __name__ == "__main__":
    main()
