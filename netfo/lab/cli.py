"""`netfo lab ...`: the namespace lab from the command line."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    lab = sub.add_parser("lab", help="network-namespace lab of the kernel document's setup")
    lab.add_argument("--prefix", default="nfo", help="namespace name prefix (several labs may coexist)")
    verbs = lab.add_subparsers(dest="verb", required=True)
    verbs.add_parser("up", help="build guest, hypervisors and peer").add_argument(
        "--wire-like", action="store_true", help="peer offloads off (MTU frames, full checksums)")
    verbs.add_parser("down", help="remove everything the lab made")
    verbs.add_parser("status", help="namespaces and links").add_argument("--json", action="store_true")
    verbs.add_parser("migrate", help="the document's live-migration scripts, step by step")
    verbs.add_parser("unplug", help="virsh detach-device: the VF leaves the guest")
    plug = verbs.add_parser("plug", help="virsh attach-device: a new VF appears in the guest")
    plug.add_argument("--side", choices=("src", "dst"))
    link = verbs.add_parser("link", help="virsh domif-setlink / VF far end up or down")
    link.add_argument("which", choices=("virtio", "vf"))
    link.add_argument("state", choices=("up", "down"))
    lab.set_defaults(fn=cmd_lab)
    add_demo_parser(sub)


def add_demo_parser(sub) -> None:
    demo = sub.add_parser(
        "demo", help="build the lab, run netfo, migrate under traffic, show the timeline",
        description="Build the namespace lab, run `netfo up ens10` in its guest, stream UDP both "
                    "ways (and keep a TCP connection) through netfo, run the kernel document's "
                    "live migration, then print what happened and remove everything. Exit 0 "
                    "when connectivity survived: each direction still delivers (at least half "
                    "of the frames of its last 0.5 s), neither was cut for more than 2 s, and "
                    "the TCP connection opened before the first step still works after the last.")
    demo.add_argument("--prefix", default="demo", help="lab namespace prefix (default: demo)")
    demo.add_argument("--rate", type=float, default=10000,
                      help="UDP frames per second in each direction (default: 10000)")
    demo.add_argument("--keep", action="store_true",
                      help="leave the lab and netfo running afterwards (remove: netfo lab --prefix P down)")
    demo.add_argument("--json", action="store_true", help="print the timeline as JSON (progress on stderr)")
    demo.add_argument("--plot", metavar="FILE.png", help="draw the timeline (needs matplotlib)")
    demo.add_argument("--wire-like", action="store_true", help="peer offloads off (as `lab up --wire-like`)")
    demo.set_defaults(fn=cmd_demo)


def cmd_demo(args) -> int:
    from .demo import cmd_demo as run
    return run(args)


def cmd_lab(args) -> int:
    from .topology import Lab, LabError
    from ..errors import NetfoError

    lab = Lab(args.prefix, wire_like=getattr(args, "wire_like", False))
    try:
        if args.verb == "up":
            lab.up()
            print(f"lab {args.prefix}: up (guest namespace {lab.guest}; try "
                  f"`ip netns exec {lab.guest} netfo up ens10`)")
        elif args.verb == "down":
            lab.down()
            print(f"lab {args.prefix}: down")
        elif args.verb == "status":
            st = lab.status()
            print(json.dumps(st, indent=2) if args.json else _format(st))
        elif args.verb == "migrate":
            steps = lab.migrate()
            print(f"migrated in {sum(t for _, t in steps) * 1000:.1f} ms")
        elif args.verb == "unplug":
            lab.unplug()
        elif args.verb == "plug":
            lab.plug(args.side)
        elif args.verb == "link":
            lab.link(args.which, args.state)
    except LabError as e:
        raise NetfoError(str(e)) from None
    return 0


def _format(st: dict) -> str:
    return json.dumps(st, indent=2)
