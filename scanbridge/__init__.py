"""The ``scanbridge`` command line: one module per command group (``main.py`` lists them).

May import ``actors``, ``common`` and ``broker``; nothing imports it. ``jsbundle.py`` is
no command: ``make js`` runs it to write the JS client as one file (``dist/scanbridge.js``).
"""
