"""Stand-in for the pip bootstrap script (get-pip.py) ansible-test downloads into the empty
virtual environments of its sanity tests, from a host outside the package registries that this
machine and CI cannot reach. tests/install-python.sh puts it where ansible-test caches that
script (~/.ansible/test/cache/get_pip_<version>.py); ansible-test runs it with pip's install
arguments (``pip==24.2 --no-setuptools --no-wheel``).

It does what get-pip.py does with other means: pip from the interpreter's own ensurepip
(Debian: python3-venv), then the requested pip from PyPI.
"""

import subprocess
import sys

# get-pip.py's own options; pip install does not know them.
OWN_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in OWN_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])


if __name__ == "__main__":
    main()
