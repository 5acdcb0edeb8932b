"""Canopy's sans-IO protocol core: values, codecs and state machines over bytes.

Nothing in this package touches a socket, a file, the clock or the system RNG:
time and randomness come in as arguments (see docs/SPEC.md, "Conventions").
"""
