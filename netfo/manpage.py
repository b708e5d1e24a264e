"""netfo(8), written from the argparse parser (cli.parser()): every command,
option, choice and help text as `netfo ... --help` has them, so the page
cannot fall behind the code.  setup.py writes it at build time and the
package installs it as share/man/man8/netfo.8; `python -m netfo.manpage`
prints it.  (Ours rather than argparse-manpage: no build dependency, and the
sections below the commands are netfo's.)"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from typing import Iterator, Optional, Tuple

from . import __version__
from .events import KINDS


# -- the parser, walked (completion.py reads it the same way) ---------------

def commands(parser: argparse.ArgumentParser, path: Tuple[str, ...] = ("netfo",),
             help: Optional[str] = None) -> Iterator[tuple]:
    """(path, parser, help) for the root and every (sub)command, depth first."""
    yield path, parser, help
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in a._choices_actions}
            for name, sub in a.choices.items():
                yield from commands(sub, path + (name,), helps.get(name))


def subcommands(parser: argparse.ArgumentParser) -> list:
    return [n for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for n in a.choices]


def options(parser: argparse.ArgumentParser, with_help: bool = True) -> list:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS
            and (with_help or not isinstance(a, argparse._HelpAction))]


def positionals(parser: argparse.ArgumentParser) -> list:
    return [a for a in parser._actions if not a.option_strings
            and not isinstance(a, argparse._SubParsersAction) and a.help != argparse.SUPPRESS]


def takes_value(a: argparse.Action) -> bool:
    return a.nargs != 0


def value_name(a: argparse.Action) -> str:
    if a.choices is not None:
        return "{" + ",".join(map(str, a.choices)) + "}"
    if a.metavar is not None:
        return a.metavar if isinstance(a.metavar, str) else " ".join(a.metavar)
    return a.dest.upper()


def help_text(parser: argparse.ArgumentParser, a: argparse.Action) -> str:
    """The help as --help shows it (%(default)s and such filled in)."""
    if not a.help:
        return ""
    try:
        return parser._get_formatter()._expand_help(a)
    except (KeyError, TypeError, ValueError):
        return a.help


# -- roff --------------------------------------------------------------------

def esc(text: str) -> str:
    """Running text for roff: backslashes escaped, lines of at most 80
    bytes, none taken for a request."""
    text = textwrap.fill(text.replace("\\", "\\e"), 78, break_long_words=False,
                         break_on_hyphens=False)
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.splitlines())


def _flag(s: str) -> str:
    return "\\fB" + s.replace("-", "\\-") + "\\fR"


def _usage(a: argparse.Action) -> str:
    name = "\\fI" + esc(value_name(a)) + "\\fR"
    if a.option_strings:
        text = _flag(a.option_strings[0]) + (" " + name if takes_value(a) else "")
        return text if a.required else "[" + text + "]"
    if a.nargs in ("?", "*"):
        return "[" + name + (" ..." if a.nargs == "*" else "") + "]"
    return name + (" ..." if a.nargs in ("+", argparse.REMAINDER) else "")


def synopsis(path: tuple, parser: argparse.ArgumentParser) -> str:
    words = [_flag(" ".join(path))] + [_usage(a) for a in options(parser, len(path) == 1)
                                       + positionals(parser)]
    if subcommands(parser):
        words.append("\\fICOMMAND\\fR ...")
    return "\n".join(textwrap.wrap(" ".join(words), 78, break_long_words=False,
                                   break_on_hyphens=False))


IMPLIED = {"ifname": "the master's name (the NIC's name `netfo up` was given)"}


def _describe(parser: argparse.ArgumentParser, with_help: bool = False) -> list:
    lines = []
    for a in options(parser, with_help) + positionals(parser):
        if not a.help and a.dest not in IMPLIED:
            continue                    # a positional the synopsis shows well enough
        head = ", ".join(_flag(s) for s in a.option_strings) if a.option_strings else \
            "\\fI" + esc(value_name(a)) + "\\fR"
        if a.option_strings and takes_value(a):
            head += " \\fI" + esc(value_name(a)) + "\\fR"
        lines += [".TP", head, esc(help_text(parser, a) or IMPLIED[a.dest])]
    return lines


STATIC = r"""
.SH EXIT STATUS
0 on success, 1 when netfo failed (one line on standard error says why), 2 for
a bad argument.
\fBnetfo status\fR also exits 1 when no slave can transmit;
\fBnetfo status \-\-check\fR exits 0 (the primary transmits), 1 (degraded: the
standby does) or 2 (nothing transmits, or no daemon).
.SH EVENTS
\fBnetfo events\fR \fIIFNAME\fR \fB\-\-json\fR prints one JSON object per line,
\fB{"time": \fR\fIwall_s\fR\fB, "mono": \fR\fImonotonic_s\fR\fB, "master": \fR\fIIFNAME\fR\fB, "kind": \fR\fIK\fR\fB, ...}\fR,
of kinds
%(kinds)s
(and any kind a newer daemon adds).
With \fB\-\-follow\fR the daemon pushes each event as it records it; the
command ends when the master goes down and follows the new daemon across
\fBnetfo restart\fR.
A reader that leaves 512 KB of events unread is disconnected, with a last
line \fB{"error": "too slow: \fR\fIN\fR\fB events dropped"}\fR.
.SH FILES
.TP
.I /run/netfo/net\fIINODE\fP\-\fIIFNAME\fP.log
the log of a daemon started by \fBnetfo up\fR (without \fB\-\-foreground\fR)
.TP
.I /run/netfo/net\fIINODE\fP\-\fIIFNAME\fP.journal
what \fBnetfo down\fR restores, kept until it has
.TP
.I /etc/netfo/netfo.conf
the NICs \fBnetfo auto\fR makes masters of
.SH NOTES
The control socket is the abstract Unix socket \fB@netfo/\fR\fIIFNAME\fR of the
network namespace: \fBstatus\fR and \fBevents\fR are open to every user,
everything else needs root or CAP_NET_ADMIN.
.SH SEE ALSO
.BR ip (8),
.BR systemd.service (5),
.BR nft (8)
"""


def _date() -> str:
    """The build's date (SOURCE_DATE_EPOCH, for reproducible builds)."""
    try:
        when = int(os.environ["SOURCE_DATE_EPOCH"])
    except (KeyError, ValueError):
        when = int(time.time())
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def render(parser: argparse.ArgumentParser) -> str:
    root = parser
    about = (root.description or "userspace net_failover").strip().rstrip(".")
    out = [f'.TH NETFO 8 {_date()} "netfo {__version__}" "System Administration"',
           ".ad l",                     # ragged right: the synopses are long
           ".SH NAME", "netfo \\- " + esc(about[:1].lower() + about[1:]),
           ".SH SYNOPSIS", synopsis(("netfo",), root),
           ".SH DESCRIPTION", esc(root.description or "")]
    if options(root):
        out += [".SH OPTIONS", *_describe(root, with_help=True)]
    out.append(".SH COMMANDS")
    for path, sub, help in list(commands(root))[1:]:
        out += [".SS " + '"' + " ".join(path[1:]) + '"', synopsis(path, sub)]
        if help:
            out += [".PP", esc(help[0].upper() + help[1:]) + ("" if help.endswith(".") else ".")]
        if sub.description and sub.description != help:
            out += [".PP", esc(sub.description)]
        if subcommands(sub):
            out += [".PP", "Commands: " + ", ".join(subcommands(sub)) + " (below)."]
        out += _describe(sub)
    kinds = ", ".join(k.replace("-", "\\-") for k in KINDS)
    return "\n".join(out) + STATIC % {"kinds": kinds}


def main(argv=None) -> int:
    from .cli import parser
    sys.stdout.write(render(parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
