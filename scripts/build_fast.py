"""Build the passive probe's compiled hot path (probes/_fast.pyx) in place, with Cython and
the machine's C compiler (Debian's build-essential and python3-dev), linked with nDPI (Debian's
libndpi-dev). Run by scripts/setup.sh;
without it the probe runs its pure-Python path and says so (`cems-probe --version`)."""

import os
import subprocess
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ndpi_include_dirs() -> list[str]:
    """nDPI's headers (Debian's libndpi-dev), as its pkg-config file names them."""
    try:
        flags = subprocess.run(["pkg-config", "--cflags", "libndpi"], capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        flags = []
    found = [flag[2:] for flag in flags if flag.startswith("-I")]
    return found or ["/usr/include/ndpi"]

if __name__ == "__main__":
    os.chdir(ROOT)
    sys.argv = [sys.argv[0], "build_ext", "--inplace", "-q"]
    setup(name="cems-fast", script_args=sys.argv[1:],
          ext_modules=cythonize([Extension("probes._fast", ["probes/_fast.pyx"],
                                           include_dirs=ndpi_include_dirs(),
                                           libraries=["ndpi"], extra_compile_args=["-O2"])],
                                quiet=True, compiler_directives={"language_level": 3}))
