"""``python -m envcap``: the same command line as the ``envcap`` script (useful where the script is not on PATH)."""

from envcap.cli import main

main(prog_name="envcap")
