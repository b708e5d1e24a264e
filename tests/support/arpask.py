"""Ask who has an IPv4 address, many times, and count the answers.

Run in a namespace: `python arpask.py IFNAME TARGET_IP SENDER_IP COUNT
INTERVAL_S`; prints {"sent": N, "replies": M} once the last request has had
0.5 s to be answered.  Each request is answered once by a host whose
other interfaces keep quiet: M > N means a second stack answered too.
"""
import json
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def main(ifname: str, target: str, sender: str, count: int, interval: float) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((ifname, ETH_P_ARP))
    s.setblocking(False)
    mac = s.getsockname()[4]
    tip, sip = socket.inet_aton(target), socket.inet_aton(sender)
    request = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + sip + bytes(6) + tip)
    replies = 0

    def read() -> None:
        nonlocal replies
        while True:
            try:
                frame = s.recv(2048)
            except BlockingIOError:
                return
            # an ARP reply (op 2) from target to us
            if frame[20:22] == b"\x00\x02" and frame[28:32] == tip and frame[38:42] == sip:
                replies += 1

    for _ in range(count):
        s.send(request)
        time.sleep(interval)
        read()
    time.sleep(0.5)
    read()
    print(json.dumps({"sent": count, "replies": replies}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
