"""netfo(8) and the bash/zsh completion, generated from the CLI's parser:
clean for groff and mandoc, complete (every command and option of the
parser, whoever adds them), and working in real bash and zsh; no root."""
import os
import shutil
import subprocess
import sys

import pytest

from netfo import cli, completion, manpage, server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("man") / "netfo.8"
    path.write_text(manpage.render(cli.parser()))
    return path


def every_command():
    return list(manpage.commands(cli.parser()))


def needs(tool):
    return pytest.mark.skipif(shutil.which(tool) is None,
                              reason=f"{tool} is not installed (README's second command)")


@needs("groff")
def test_groff_renders_it_without_a_warning(page):
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou", str(page)], capture_output=True,
                       text=True, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "netfo events [--follow] [-j] IFNAME" in p.stdout.replace("\u2010", "-")


@needs("mandoc")
def test_mandoc_lint_finds_nothing(page):
    p = subprocess.run(["mandoc", "-T", "lint", "-W", "style", str(page)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr


def test_every_command_and_option_is_in_the_page(page):
    text = page.read_text()
    for path, p, _ in every_command():
        if len(path) > 1:
            assert f'.SS "{" ".join(path[1:])}"' in text, path
        for a in manpage.options(p, with_help=len(path) == 1):
            for s in a.option_strings:
                assert manpage._flag(s) in text, (path, s)
    assert f"{server.SUB_BUFFER // 1024} KB of events unread" in text


def test_roff_escapes():
    assert manpage.esc(".x and 'y\\z") == "\\&.x and 'y\\ez"


def test_the_parser_needs_nothing_outside_the_standard_library():
    """setup.py builds the page with only setuptools and Cython at hand."""
    code = ("import sys\n"
            "for m in ('pyroute2', 'netfo._fastpath', 'prometheus_client', 'scapy', "
            "'matplotlib', 'Cython'):\n"
            "    sys.modules[m] = None\n"
            f"sys.path.insert(0, {REPO!r})\n"
            "from netfo import cli, completion, manpage\n"
            "p = cli.parser()\n"
            "print(len(manpage.render(p)), len(completion.bash(p)), len(completion.zsh(p)))\n")
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# -- bash --------------------------------------------------------------------

BASH_DRIVER = r"""
source "$1"
complete -p netfo
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=(); _netfo
      echo "${COMPREPLY[*]}"; }
"""


def bash_complete(tmp_path, cases):
    script = tmp_path / "netfo.bash"
    script.write_text(completion.bash(cli.parser()))
    calls = "\n".join("t " + " ".join(f"'{w}'" for w in words) for words in cases)
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER + calls, "x",
                        str(script)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.split("\n")
    assert lines[0] == "complete -F _netfo netfo"
    return [set(line.split()) for line in lines[1:1 + len(cases)]]


@needs("bash")
def test_bash_completes_subcommands_options_and_values(tmp_path):
    got = bash_complete(tmp_path, [
        ("netfo", ""), ("netfo", "st"), ("netfo", "events", "ens10", "--f"),
        ("netfo", "set", "ens10", ""), ("netfo", "set", "ens10", "active", ""),
        ("netfo", "up", "--rx-policy", ""), ("netfo", "lab", "--prefix", "x", "pl"),
        ("netfo", "lab", "plug", "--side", ""), ("netfo", "up", "--threads", "2", "--no-"),
        ("netfo", "up", ""),
    ])
    top = set(manpage.subcommands(cli.parser()))
    assert got[0] == top and {"up", "down", "status", "events"} <= top
    assert got[1] == {"status"}
    assert got[2] == {"--follow"}
    assert got[3] == {"active"}
    assert got[4] == {"primary", "standby", "auto"}
    assert got[5] == {"active", "kernel", "all"}
    assert got[6] == {"plug"}
    assert got[7] == {"src", "dst"}
    assert got[8] == {"--no-resend"}
    assert "lo" in got[9]                       # the links of this namespace


@needs("bash")
def test_bash_knows_every_command_and_option_of_the_parser(tmp_path):
    cases, want = [], []
    for path, p, _ in every_command():
        subs = manpage.subcommands(p)
        if subs:
            cases.append((*path, ""))
            want.append(set(subs))
        cases.append((*path, "-"))
        want.append({s for a in manpage.options(p) for s in a.option_strings})
    assert bash_complete(tmp_path, cases) == want


# -- zsh ---------------------------------------------------------------------

ZSH_DRIVER = r"""
compadd() { [[ $1 == -- ]] && shift; print -rn -- "$* " }
_files() { print -rn -- "_files:$* " }
t() { words=("$@"); CURRENT=$#words; _netfo; print }
words=(netfo ""); CURRENT=2
source $1 >/dev/null
"""


@needs("zsh")
def test_zsh_completes_the_same(tmp_path):
    script = tmp_path / "_netfo"
    script.write_text(completion.zsh(cli.parser()))
    assert script.read_text().startswith("#compdef netfo\n")
    cases = [("netfo", ""), ("netfo", "set", "ens10", "active", ""),
             ("netfo", "up", "--rx-policy", ""), ("netfo", "lab", "plug", "--side", ""),
             ("netfo", "auto", "--config", ""), ("netfo", "systemd", "install", "--prefix", "")]
    calls = "\n".join("t " + " ".join(f"'{w}'" for w in words) for words in cases)
    p = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER + calls, "x", str(script)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    got = [set(line.split()) for line in p.stdout.split("\n")[:len(cases)]]
    assert got == [set(manpage.subcommands(cli.parser())), {"primary", "standby", "auto"},
                   {"active", "kernel", "all"}, {"src", "dst"}, {"_files:"}, {"_files:-/"}]


def test_value_kinds():
    p = cli.parser()
    t = completion.tables(p)
    assert t["pos"]["netfo up 0"] == "links" and t["pos"]["netfo down 0"] == "masters"
    assert t["optval"]["netfo up --primary"] == "links"
    assert t["pos"]["netfo events 0"] == "masters"
