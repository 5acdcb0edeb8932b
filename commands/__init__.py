"""The bodies of the `canopy` commands, one module per command group; cli.py parses and
dispatches. Shared pieces: `common` (opening the data directory), `output` (what the CLI
writes); a running node is reached only through `node.local_api`."""
