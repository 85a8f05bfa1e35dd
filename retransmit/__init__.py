"""Retransmission and initial-image service: journal, rate-limited NACK serving, SoupBinTCP images."""
