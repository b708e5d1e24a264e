"""Builds the Cython fast path; metadata lives in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("netfo._fastpath", ["netfo/_fastpath.pyx"],
                   extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3"},
    ),
)
