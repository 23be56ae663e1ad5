#!/usr/bin/env python3
"""A TCP proxy for benches/remote.sh: forwards 127.0.0.1:LISTEN to TARGET both ways, holds
every chunk DELAY_MS before passing it on (so a round trip gains 2 x DELAY_MS), and counts
the bytes it forwards.

    delayproxy.py LISTEN_PORT TARGET_PORT DELAY_MS STATS_FILE

The delay is a pipe, not a stop-and-wait: a chunk read at time t is written at t + delay
whatever else is queued, so throughput is kept and only latency grows (like a long link;
bandwidth is not limited). Order is kept per direction: one queue and one timer each. A
direction holds at most HOLD bytes (read, not yet written, or in the socket's write buffer)
before it stops reading its source, so memory stays bounded.

Counts: on SIGUSR1 (and on exit) the proxy writes "SEQ CONNECTIONS BYTES_UP BYTES_DOWN" to
STATS_FILE (written to a temporary file and renamed): bytes up = client to server (requests,
uploads), down = server to client. SEQ counts the writes, so a reader can wait for a fresh one.
SIGTERM stops it. Python's standard library only.
"""
import asyncio
import collections
import os
import signal
import sys

HOLD = 16 << 20          # bytes a direction may hold before it pauses reading
TOTAL = {"conns": 0, "up": 0, "down": 0, "seq": 0}


class Half:
    """One direction: what `src` sends is written to `dst` DELAY later."""

    def __init__(self, loop, delay, key):
        self.loop, self.delay, self.key = loop, delay, key
        self.src = self.dst = None      # transports
        self.queue = collections.deque()  # (due, bytes) or (due, None) for EOF
        self.timer = None
        self.held = 0                   # bytes queued here
        self.paused = False             # src reading paused by us
        self.dst_full = False           # dst transport asked us to stop writing
        self.closed = False

    def feed(self, data):
        TOTAL[self.key] += len(data)
        if self.delay == 0 and not self.queue and self.dst is not None:
            if not self.dst.is_closing():
                self.dst.write(data)
        else:
            self.queue.append((self.loop.time() + self.delay, data))
            self.held += len(data)
            self.arm()
        self.throttle()

    def eof(self):
        self.queue.append((self.loop.time() + self.delay, None))
        self.arm()

    def arm(self):
        if self.timer is None and self.queue and self.dst is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self.flush)

    def flush(self):
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and not self.closed:
            _, data = self.queue.popleft()
            if self.dst.is_closing():      # the receiver is gone: drop what was meant for it
                self.held -= len(data) if data is not None else 0
                continue
            if data is None:
                if self.dst.can_write_eof():
                    self.dst.write_eof()
                else:
                    self.dst.close()
                continue
            self.held -= len(data)
            self.dst.write(data)
        self.arm()
        self.throttle()

    def throttle(self):
        if self.src is None or self.closed:
            return
        full = self.held + (self.dst.get_write_buffer_size() if self.dst else 0) > HOLD or self.dst_full
        if full and not self.paused:
            self.paused = True
            self.src.pause_reading()
        elif not full and self.paused:
            self.paused = False
            self.src.resume_reading()

    def close(self):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()


class End(asyncio.Protocol):
    """One socket of a proxied connection; `out` is the Half that carries what it reads,
    `inn` the Half that writes to it."""

    def __init__(self, out, inn, peer_closed):
        self.out, self.inn, self.peer_closed = out, inn, peer_closed

    def data_received(self, data):
        self.out.feed(data)

    def eof_received(self):
        self.out.eof()
        return True   # keep the write side open (half-close)

    def pause_writing(self):
        self.inn.dst_full = True
        self.inn.throttle()

    def resume_writing(self):
        self.inn.dst_full = False
        self.inn.throttle()

    def connection_lost(self, exc):
        self.peer_closed(self)


class Client(End):
    def __init__(self, loop, target, delay):
        self.loop, self.target = loop, target
        up, down = Half(loop, delay, "up"), Half(loop, delay, "down")
        super().__init__(up, down, self.lost)
        self.server = None
        self.done = False

    def connection_made(self, transport):
        TOTAL["conns"] += 1
        self.transport = transport
        self.out.src = transport     # client -> server
        self.inn.dst = transport     # server -> client
        transport.pause_reading()    # until the server side is connected
        self.out.paused = True
        self.loop.create_task(self.connect())

    async def connect(self):
        try:
            t, p = await self.loop.create_connection(
                lambda: End(self.inn, self.out, self.lost), "127.0.0.1", self.target)
        except OSError:
            self.transport.close()
            return
        self.server = t
        self.out.dst = t
        self.inn.src = t
        self.out.arm()
        self.out.throttle()

    def lost(self, end):
        # Either side gone: the other is closed once what is queued towards it is written.
        if self.done:
            return
        self.done = True
        for half, t in ((self.out, self.server), (self.inn, self.transport)):
            if t is None or t.is_closing():
                half.close()
                continue
            if half.queue:
                last = half.queue[-1][0]
                self.loop.call_at(last + 0.001, t.close)
            else:
                t.close()
        self.out.src = self.inn.src = None


def write_stats(path):
    TOTAL["seq"] += 1
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f'{TOTAL["seq"]} {TOTAL["conns"]} {TOTAL["up"]} {TOTAL["down"]}\n')
    os.replace(tmp, path)


async def main():
    listen, target, delay_ms, stats = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    loop = asyncio.get_running_loop()
    delay = delay_ms / 1000.0
    server = await loop.create_server(lambda: Client(loop, target, delay), "127.0.0.1", listen,
                                      reuse_address=True, backlog=512)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, write_stats, stats)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    write_stats(stats)   # seq 1: listening
    await stop.wait()
    server.close()
    write_stats(stats)


if __name__ == "__main__":
    asyncio.run(main())
