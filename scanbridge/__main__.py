"""``python -m scanbridge``: the CLI, as the installed ``scanbridge`` command."""

from .main import main

main()
