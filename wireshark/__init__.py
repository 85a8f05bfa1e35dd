"""Wireshark Lua dissectors generated from the construct declarations."""
