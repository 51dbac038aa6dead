"""The ``streamcompose`` command line."""
