"""The ``scanbridge`` command line: one module per command group (``main.py`` lists them).

May import ``actors``, ``common`` and ``broker``; nothing imports it.
"""
