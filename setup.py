"""Builds the Cython fast path, and netfo(8) and the shell completions;
metadata lives in pyproject.toml."""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def generated() -> list:
    """netfo(8), bash and zsh completion, written from the CLI's argparse
    parser (netfo/manpage.py, netfo/completion.py: the CLI imports nothing
    outside the standard library), installed under the prefix's share/."""
    sys.path.insert(0, HERE)
    try:
        from netfo import cli, completion, manpage
    finally:
        sys.path.remove(HERE)
    parser = cli.parser()
    files = {"man/man8/netfo.8": manpage.render(parser),
             "bash-completion/completions/netfo": completion.bash(parser),
             "zsh/site-functions/_netfo": completion.zsh(parser)}
    data_files = []
    for rel, text in files.items():
        path = os.path.join("build", "share", rel)      # relative: the wheel's data
        os.makedirs(os.path.join(HERE, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(HERE, path), "w") as f:
            f.write(text)
        data_files.append((os.path.join("share", os.path.dirname(rel)), [path]))
    return data_files


setup(
    ext_modules=cythonize(
        # liburing (liburing-dev, in the README's apt lists): --tap-io uring.
        [Extension("netfo._fastpath", ["netfo/_fastpath.pyx"],
                   include_dirs=["netfo/includes"], libraries=["uring"],
                   depends=["netfo/includes/tapring.h"],
                   extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    ),
    data_files=generated(),
)
