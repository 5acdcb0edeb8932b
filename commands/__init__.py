"""The bodies of the `canopy` commands, one module per command group; cli.py parses and
dispatches. Shared pieces: `common` (opening the data directory, output), `api` (the one
client of a running node's local API)."""
