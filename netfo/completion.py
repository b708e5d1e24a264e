"""bash and zsh completion for netfo, written from the argparse parser
(cli.parser()) as manpage.py writes netfo(8): subcommands, options, choices,
and, where an argument names an interface, the links of this namespace (for
`netfo up`, `--primary`) or its masters (the daemons' control sockets, read
from /proc/net/unix: no Python runs on a Tab).  setup.py writes both at build
time (share/bash-completion/completions/netfo, share/zsh/site-functions/_netfo);
`python -m netfo.completion bash|zsh` prints one."""
from __future__ import annotations

import argparse
import sys

from .manpage import commands, options, positionals, subcommands, takes_value

# Arguments whose values the parser cannot tell: (command path, dest) -> kind.
HINTS = {("netfo", "up", "ifname"): "links", ("netfo", "systemd", "prefix"): "dirs"}
FILE_WORDS = ("FILE", "PATH")


def kind(path: tuple, a: argparse.Action) -> str:
    """What completes a value of a: "choices:A B", links, masters, files, dirs or ""."""
    hint = HINTS.get((*path, a.dest))
    if hint:
        return hint
    if a.choices is not None:
        return "choices:" + " ".join(map(str, a.choices))
    metavar = a.metavar if isinstance(a.metavar, str) else ""
    if metavar in ("IF", "IFNAME"):
        return "links"
    if a.dest == "ifname":
        return "masters"
    if any(w in metavar.upper() for w in FILE_WORDS) or a.dest in ("config", "log_file"):
        return "files"
    return ""


def tables(parser: argparse.ArgumentParser) -> dict:
    """The completion data, keyed by command path ("netfo lab plug"):
    subs, opts, valued (options that take a value), optval ("PATH --opt"),
    pos ("PATH N": the Nth positional)."""
    t: dict = {"subs": {}, "opts": {}, "valued": {}, "optval": {}, "pos": {}}
    for path, p, _ in commands(parser):
        key = " ".join(path)
        t["subs"][key] = " ".join(subcommands(p))
        opts = options(p)
        t["opts"][key] = " ".join(s for a in opts for s in a.option_strings)
        t["valued"][key] = " ".join(s for a in opts if takes_value(a) for s in a.option_strings)
        for a in opts:
            if takes_value(a) and kind(path, a):
                for s in a.option_strings:
                    t["optval"][f"{key} {s}"] = kind(path, a)
        for i, a in enumerate(positionals(p)):
            if kind(path, a):
                t["pos"][f"{key} {i}"] = kind(path, a)
    return t


def _assign(name: str, table: dict) -> list:
    return [f"{name}=("] + [f"    [{k!r}]={v!r}" if "'" not in k + v else
                            f'    ["{k}"]="{v}"' for k, v in sorted(table.items())] + [")"]


LINKS = "ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, \"\", $2); print $2}'"
MASTERS = ("awk '$4 == \"00010000\" && $NF ~ /^@netfo\\// {print substr($NF, 8)}' "
           "/proc/net/unix 2>/dev/null")

BASH = r"""
_netfo_values() {
    local cur=$1 what=$2
    case $what in
        choices:*) COMPREPLY=($(compgen -W "${what#choices:}" -- "$cur")) ;;
        links) COMPREPLY=($(compgen -W "$(%(links)s)" -- "$cur")) ;;
        masters) COMPREPLY=($(compgen -W "$(%(masters)s)" -- "$cur")) ;;
        files) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        dirs) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}

_netfo() {
    local cmd=netfo npos=0 i w cur=${COMP_WORDS[COMP_CWORD]} prev
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == -* ]]; then
            [[ $w != *=* && " ${_netfo_valued[$cmd]} " == *" $w "* ]] && ((i++))
        elif [[ " ${_netfo_subs[$cmd]} " == *" $w "* ]]; then
            cmd="$cmd $w"
            npos=0
        else
            ((npos++))
        fi
    done
    prev=${COMP_WORDS[COMP_CWORD-1]}
    if ((COMP_CWORD > 1)) && [[ $prev == -* && " ${_netfo_valued[$cmd]} " == *" $prev "* ]]; then
        _netfo_values "$cur" "${_netfo_optval[$cmd $prev]}"
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${_netfo_opts[$cmd]}" -- "$cur"))
    elif [[ -n ${_netfo_subs[$cmd]} ]]; then
        COMPREPLY=($(compgen -W "${_netfo_subs[$cmd]}" -- "$cur"))
    else
        _netfo_values "$cur" "${_netfo_pos[$cmd $npos]}"
    fi
}
complete -F _netfo netfo
"""

ZSH = r"""
_netfo_values() {
    local what=$1
    case $what in
        choices:*) compadd -- ${=${what#choices:}} ;;
        links) compadd -- ${(f)"$(%(links)s)"} ;;
        masters) compadd -- ${(f)"$(%(masters)s)"} ;;
        files) _files ;;
        dirs) _files -/ ;;
    esac
}

_netfo() {
    local cmd=netfo npos=0 i w cur=$words[CURRENT] prev=$words[CURRENT-1]
    for (( i = 2; i < CURRENT; i++ )); do
        w=$words[i]
        if [[ $w == -* ]]; then
            [[ $w != *=* && " $_netfo_valued[$cmd] " == *" $w "* ]] && (( i++ ))
        elif [[ " $_netfo_subs[$cmd] " == *" $w "* ]]; then
            cmd="$cmd $w"
            npos=0
        else
            (( npos++ ))
        fi
    done
    if (( CURRENT > 2 )) && [[ $prev == -* && " $_netfo_valued[$cmd] " == *" $prev "* ]]; then
        _netfo_values "$_netfo_optval[$cmd $prev]"
    elif [[ $cur == -* ]]; then
        compadd -- ${=_netfo_opts[$cmd]}
    elif [[ -n $_netfo_subs[$cmd] ]]; then
        compadd -- ${=_netfo_subs[$cmd]}
    else
        _netfo_values "$_netfo_pos[$cmd $npos]"
    fi
}

_netfo "$@"
"""

NAMES = ("subs", "opts", "valued", "optval", "pos")


def bash(parser: argparse.ArgumentParser) -> str:
    t = tables(parser)
    data = [f"declare -gA _netfo_{n}" for n in NAMES]
    for n in NAMES:
        data += _assign(f"_netfo_{n}", t[n])
    return ("# bash completion for netfo, generated from its argparse parser "
            "(netfo/completion.py)\n" + "\n".join(data) + "\n"
            + BASH % {"links": LINKS, "masters": MASTERS})


def zsh(parser: argparse.ArgumentParser) -> str:
    t = tables(parser)
    data = [f"typeset -gA _netfo_{n}" for n in NAMES]
    for n in NAMES:
        data += _assign(f"_netfo_{n}", t[n])
    return ("#compdef netfo\n# zsh completion for netfo, generated from its argparse parser "
            "(netfo/completion.py)\n" + "\n".join(data) + "\n"
            + ZSH % {"links": LINKS, "masters": MASTERS})


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["bash"], ["zsh"]):
        print("usage: python -m netfo.completion bash|zsh", file=sys.stderr)
        return 2
    from .cli import parser
    sys.stdout.write((bash if argv[0] == "bash" else zsh)(parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
