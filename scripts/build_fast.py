"""Build the passive probe's compiled hot path (probes/_fast.pyx) in place, with Cython and
the machine's C compiler (Debian's build-essential and python3-dev). Run by scripts/setup.sh;
without it the probe runs its pure-Python path and says so (`cems-probe --version`)."""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    os.chdir(ROOT)
    sys.argv = [sys.argv[0], "build_ext", "--inplace", "-q"]
    setup(name="cems-fast", script_args=sys.argv[1:],
          ext_modules=cythonize([Extension("probes._fast", ["probes/_fast.pyx"],
                                           extra_compile_args=["-O2"])],
                                quiet=True, compiler_directives={"language_level": 3}))
