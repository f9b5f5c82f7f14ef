#!/usr/bin/env python3
"""An attacker at one replica's port with a genuine client identity (issued by
the cluster CA), for tests/integration/edge.sh. It speaks the framing of
proto/frame.h (a 4-byte big-endian length, then the payload) over mutual TLS.

  amplify: frames of SIZE bytes that decode to far more than their size: a
           Message whose first field is kind KIND (fetch: a FetchReply of
           empty CommittedCert entries, two bytes each; request: a Request of
           unknown two-byte fields), sent one after another, reconnecting
           when the replica closes the link.
  slow:    LINKS links, each announcing a frame of ANNOUNCE bytes and filling
           it at RATE bytes per second per link up to FILL bytes (never
           completing it), then holding it; a link the replica closes is
           opened again after a short pause.

Runs for DURATION seconds, then prints one line of counts and exits 0. Only
loopback or a test network is ever a target.
"""
import argparse
import select
import socket
import ssl
import struct
import sys
import time

RECONNECT_PAUSE_S = 0.2
TICK_S = 0.1


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def amplifying_payload(size, kind):
    """A packed Message of exactly size bytes whose body is all two-byte fields."""
    # Message.fetch_reply = 10, Message.request = 1 (both length-delimited).
    tag = bytes([(10 << 3) | 2]) if kind == "fetch" else bytes([(1 << 3) | 2])
    # FetchReply.committed = 4 (an empty CommittedCert: 0x22 0x00); in a
    # Request, field 15 as a varint 0 (0x78 0x00) is a field it does not know.
    pair = b"\x22\x00" if kind == "fetch" else b"\x78\x00"
    body = size - 1 - 5
    while 1 + len(varint(body)) + body > size:
        body -= 1
    body -= body % 2
    payload = tag + varint(body) + pair * (body // 2)
    return payload


class Attacker:
    def __init__(self, host, port, identity):
        self.host, self.port = host, port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.ctx.check_hostname = False
        self.ctx.load_verify_locations(f"{identity}/ca.pem")
        self.ctx.load_cert_chain(f"{identity}/cert.pem", f"{identity}/key.pem")
        self.connects = 0
        self.failed_connects = 0
        self.closed = 0

    def connect(self):
        try:
            raw = socket.create_connection((self.host, self.port), timeout=10)
            s = self.ctx.wrap_socket(raw)
        except (OSError, ssl.SSLError):
            self.failed_connects += 1
            return None
        self.connects += 1
        return s


def is_closed(s):
    """True when the replica has closed s (EOF or an error is readable)."""
    try:
        readable, _, _ = select.select([s], [], [], 0)
        if not readable:
            return False
        s.setblocking(False)
        try:
            data = s.recv(4096)
        finally:
            s.setblocking(True)
        return data == b""
    except ssl.SSLWantReadError:
        return False
    except (OSError, ssl.SSLError, ValueError):
        return True


def amplify(a, args):
    payload = amplifying_payload(args.size, args.kind)
    frame = struct.pack(">I", len(payload)) + payload
    deadline = time.monotonic() + args.duration
    frames = 0
    s = None
    while time.monotonic() < deadline:
        if s is None:
            s = a.connect()
            if s is None:
                time.sleep(RECONNECT_PAUSE_S)
                continue
        try:
            s.settimeout(max(0.5, deadline - time.monotonic()))
            s.sendall(frame)
            frames += 1
        except socket.timeout:
            break
        except (OSError, ssl.SSLError):
            a.closed += 1
            s.close()
            s = None
            time.sleep(RECONNECT_PAUSE_S)
    if s is not None:
        s.close()
    return f"frames={frames} frame_bytes={len(frame)}"


def slow(a, args):
    header = struct.pack(">I", args.announce)
    chunk = max(1, int(args.rate * TICK_S))
    links = [None] * args.links  # [socket, bytes sent, time it may reconnect]
    deadline = time.monotonic() + args.duration
    sent_total = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for i, link in enumerate(links):
            if link is not None and link[0] is None:
                if now < link[2]:
                    continue
                links[i] = None
            if links[i] is None:
                s = a.connect()
                if s is None:
                    links[i] = [None, 0, now + RECONNECT_PAUSE_S]
                    continue
                try:
                    s.sendall(header)
                except (OSError, ssl.SSLError):
                    a.closed += 1
                    s.close()
                    links[i] = [None, 0, now + RECONNECT_PAUSE_S]
                    continue
                links[i] = [s, 0, 0]
            s, have, _ = links[i]
            if is_closed(s):
                a.closed += 1
                s.close()
                links[i] = [None, 0, now + RECONNECT_PAUSE_S]
                continue
            n = min(chunk, args.fill - have)
            if n <= 0:
                continue
            try:
                s.settimeout(1.0)
                s.sendall(bytes(n))
                links[i][1] += n
                sent_total += n
            except socket.timeout:
                pass
            except (OSError, ssl.SSLError):
                a.closed += 1
                s.close()
                links[i] = [None, 0, now + RECONNECT_PAUSE_S]
        time.sleep(TICK_S)
    held = sum(1 for link in links if link is not None and link[0] is not None)
    for link in links:
        if link is not None and link[0] is not None:
            link[0].close()
    return f"bytes={sent_total} links_open_at_end={held}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["amplify", "slow"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("identity", help="a directory with ca.pem, cert.pem and key.pem")
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--size", type=int, default=64 << 20, help="amplify: frame payload bytes")
    p.add_argument("--kind", choices=["fetch", "request"], default="fetch")
    p.add_argument("--links", type=int, default=16)
    p.add_argument("--announce", type=int, default=64 << 20, help="slow: announced length")
    p.add_argument("--fill", type=int, default=(64 << 20) - 1, help="slow: bytes sent per frame")
    p.add_argument("--rate", type=int, default=4 << 20, help="slow: bytes per second per link")
    args = p.parse_args()
    if args.mode == "slow" and args.fill >= args.announce:
        p.error("--fill must stay below --announce: the frame is never completed")
    a = Attacker(args.host, args.port, args.identity)
    what = amplify(a, args) if args.mode == "amplify" else slow(a, args)
    print(
        f"attack {args.mode}: {what} connects={a.connects} failed_connects={a.failed_connects} "
        f"closed_by_replica={a.closed}"
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
