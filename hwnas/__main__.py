"""``python -m hwnas`` (and ``torchrun --nproc_per_node=N -m hwnas ...``): the ``hwnas`` command line."""

import sys

from hwnas.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
