"""Run the command line with `python -m actors`."""

from actors.cli import main

main()
