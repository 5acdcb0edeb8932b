"""Canopy's I/O side: the store, the peer transport, gossip, the local API and config."""
