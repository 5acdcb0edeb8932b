"""The web app: a thin face over the functions the CLI uses, served by the running node
under /ui/ on its local API listener (app.py mounts it; only `canopy run` imports it, so
commands that never serve it do not pay for its libraries)."""

UI_PREFIX = "/ui/"
