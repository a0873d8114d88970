"""Writing files and formatting text: shared by every layer that writes or prints (CLI, trainer, grid).

It lives below all of them so that nothing has to import the CLI to write a file atomically or to print
``5.29M``; it imports nothing of specdsl but `specdsl.errors`.
"""
