"""The ``hwnas`` command line: one module per command group, registered in ``hwnas.cli.main``."""
