"""The subcommands, one module each (``optitop record`` is ``commands/record.py``); ``optitop.cli`` dispatches.

Shared options, bounds and exit codes live in ``optitop.args``: no command imports another's private names,
and nothing imports the entry point.
"""
