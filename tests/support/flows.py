"""Many TCP flows at once, each an echo of its own bytes: what spreads over
the datapath queues (--queues), checked byte for byte.

    flows.py serve IP PORT N      accept N connections, echo each to its end
    flows.py send IP PORT N SIZE  N connections at once, SIZE bytes each way;
                                  prints {"flows": N, "ok": flows echoed intact}
"""
from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading


def serve(ip: str, port: int, n: int) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(n)
    print("ready", flush=True)

    def echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(1 << 16):
                c.sendall(data)

    threads = []
    for _ in range(n):
        c, _ = s.accept()
        threads.append(threading.Thread(target=echo, args=(c,)))
        threads[-1].start()
    for t in threads:
        t.join()


def send(ip: str, port: int, n: int, size: int) -> None:
    ok = []

    def one(i: int) -> None:
        payload = hashlib.sha256(str(i).encode()).digest() * (size // 32)
        c = socket.create_connection((ip, port), timeout=30)
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(_read_all(c, len(payload))))
        reader.start()
        c.sendall(payload)
        reader.join()
        c.close()
        if bytes(got) == payload:
            ok.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"flows": n, "ok": len(ok)}))


def _read_all(c: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        data = c.recv(1 << 16)
        if not data:
            break
        buf += data
    return bytes(buf)


if __name__ == "__main__":
    cmd, ip, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if cmd == "serve":
        serve(ip, port, n)
    else:
        send(ip, port, n, int(sys.argv[5]))
