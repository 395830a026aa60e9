"""The global ``--quiet`` / ``--debug`` switches, set once per invocation."""

STATE = {"quiet": False, "debug": False}
