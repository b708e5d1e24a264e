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


def cmd_lab(args) -> int:
    from .lab import Lab, LabError
    from .links import NetfoError

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
