"""Subcommands of `testbed`; one module per subcommand, each with ``register(subparsers)``."""
