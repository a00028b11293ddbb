"""The subcommands, one module each (``optitop record`` is ``commands/record.py``); ``optitop.cli`` dispatches.

Shared options, bounds and exit codes live in ``optitop.args``; the one stop-signal/deadline wait in
``waiting.py``; reading a recording with a progress line in ``progress.py``. No command imports another command's
module, and nothing imports the entry point.
"""
