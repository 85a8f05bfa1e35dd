"""Relays: an exchange feed or our channels in, our channel out (normalize, delay, filter, vendor switch)."""
