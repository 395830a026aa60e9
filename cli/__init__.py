"""ephys command-line interface (typer)."""
