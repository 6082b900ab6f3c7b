"""The ``edgehive`` command: starts, joins and inspects a stack of edgehive processes.

It launches components as separate processes and never imports their internals.
"""
