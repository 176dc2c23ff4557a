"""The ``rostersync`` command line (Typer), split by command group. Nothing imports ``cli``: it is the top floor."""
