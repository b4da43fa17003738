"""``python -m labelqa`` runs the CLI."""

from labelqa.cli.app import main

main()
