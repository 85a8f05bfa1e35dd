"""Small pieces every daemon shares: named counters, multicast socket set-up, the daemon runner."""
