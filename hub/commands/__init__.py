"""The command line's feature groups (``hub onboard``, ``hub report``, ``hub audit``, ...).

``hub/cli.py`` builds the root group and its own commands, and names each of these modules' commands
in its ``FEATURE_COMMANDS`` table with its short help: a module is imported when one of its commands
runs, never for ``hub --help``. Commands parse options, call a service and print.
"""
