"""Stream inference: sources of frames feeding the one inference path (`core.py`, through the workflow engine)."""
