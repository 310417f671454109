"""``python -m vramplan`` runs the CLI."""

from vramplan.cli.app import main

main()
