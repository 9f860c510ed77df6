"""The `loop` command line: thin Typer adapters over the library."""
