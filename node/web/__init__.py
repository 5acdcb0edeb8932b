"""The web app: a thin face over the functions the CLI uses, served by the running node
under /ui/ on its local API listener (app.py mounts it; this package is imported lazily,
at `Node.start`, so that commands that never serve it do not pay for its libraries)."""

UI_PREFIX = "/ui/"
