"""Canopy's benchmark harness (issue 3): `make bench`, or `python -m bench NAME [--json]`."""
