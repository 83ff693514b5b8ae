"""The command line's feature groups (``hub onboard``, ``hub report``, ``hub audit``, ...).

Each module adds its group to the ``hub`` command through ``register(cli)``; ``hub/cli.py``
builds the root group and its own commands. Commands parse options, call a service and print.
"""
