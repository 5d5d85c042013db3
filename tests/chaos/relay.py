#!/usr/bin/env python3
"""A UDP relay that adds delay, jitter and loss, for the chaos suite.

This kernel has no netem, so delay and jitter are made in user space:
every datagram from a client to LISTEN goes to UPSTREAM from a socket of
that client's own (so the server sees one address per client address, and a
client whose address changes arrives from a new one, as after a NAT
rebinding), and every answer goes back to the client. Each datagram, in each
direction, waits DELAY +/- JITTER ms (uniform) and is dropped with
probability LOSS %. Datagrams keep their order in each direction (a
datagram never leaves before the one before it), as a radio link's queue
keeps it: independent delays at 100 datagrams a second would reorder most
of them, which QUIC takes for loss.

SIGUSR1 switches to the second profile (--then-*): a Wi-Fi -> mobile
handover's new path. On SIGTERM the counts are printed to stderr.

    relay.py --listen 10.211.0.1:4434 --upstream 10.211.0.1:4433 \\
        --delay-ms 150 --jitter-ms 50 [--loss-pct 0] \\
        [--then-delay-ms 120 --then-jitter-ms 30 --then-loss-pct 2]
"""

import argparse
import asyncio
import random
import signal
import socket
import sys


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Profile:
    def __init__(self, delay_ms, jitter_ms, loss_pct):
        self.delay_ms, self.jitter_ms, self.loss_pct = delay_ms, jitter_ms, loss_pct

    def __str__(self):
        return f"{self.delay_ms}+-{self.jitter_ms} ms, {self.loss_pct}% loss"


class Relay:
    def __init__(self, loop, listen, upstream, profiles):
        self.loop, self.upstream, self.profiles = loop, upstream, profiles
        self.profile = profiles[0]
        self.counts = {"forwarded": 0, "dropped": 0, "clients": 0}
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.front.bind(listen)
        self.front.setblocking(False)
        self.backs = {}
        # The time the last datagram of each direction leaves, per socket
        # and destination: the next leaves no earlier.
        self.last = {}
        loop.add_reader(self.front, self.from_client)

    def later(self, sock, data, to):
        p = self.profile
        if random.random() * 100 < p.loss_pct:
            self.counts["dropped"] += 1
            return
        delay = max(0.0, p.delay_ms + random.uniform(-p.jitter_ms, p.jitter_ms)) / 1000
        key = (sock.fileno(), to)
        at = max(self.loop.time() + delay, self.last.get(key, 0.0))
        self.last[key] = at
        self.counts["forwarded"] += 1
        self.loop.call_at(at, self.send, sock, data, to)

    @staticmethod
    def send(sock, data, to):
        try:
            sock.sendto(data, to)
        except OSError:
            pass  # a full buffer drops the datagram, as a link would

    def from_client(self):
        while True:
            try:
                data, client = self.front.recvfrom(65536)
            except BlockingIOError:
                return
            back = self.backs.get(client)
            if back is None:
                back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                back.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                back.bind((self.upstream[0], 0))
                back.setblocking(False)
                self.backs[client] = back
                self.counts["clients"] += 1
                self.loop.add_reader(back, self.from_upstream, back, client)
            self.later(back, data, self.upstream)

    def from_upstream(self, back, client):
        while True:
            try:
                data, _ = back.recvfrom(65536)
            except BlockingIOError:
                return
            self.later(self.front, data, client)

    def switch(self):
        if len(self.profiles) > 1:
            self.profile = self.profiles[1]
            print(f"relay: switched to {self.profile}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=addr, required=True)
    ap.add_argument("--upstream", type=addr, required=True)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--loss-pct", type=float, default=0)
    ap.add_argument("--then-delay-ms", type=float)
    ap.add_argument("--then-jitter-ms", type=float, default=0)
    ap.add_argument("--then-loss-pct", type=float, default=0)
    a = ap.parse_args()
    profiles = [Profile(a.delay_ms, a.jitter_ms, a.loss_pct)]
    if a.then_delay_ms is not None:
        profiles.append(Profile(a.then_delay_ms, a.then_jitter_ms, a.then_loss_pct))
    loop = asyncio.new_event_loop()
    relay = Relay(loop, a.listen, a.upstream, profiles)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, relay.switch)
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    print(f"relay: {a.listen[0]}:{a.listen[1]} -> {a.upstream[0]}:{a.upstream[1]}, {relay.profile}",
          file=sys.stderr, flush=True)
    loop.run_until_complete(stop)
    c = relay.counts
    print(f"relay: forwarded {c['forwarded']}, dropped {c['dropped']}, client addresses {c['clients']}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
