"""``python -m streamcompose.cli`` is the ``streamcompose`` command."""

from streamcompose.cli.main import main

main()
