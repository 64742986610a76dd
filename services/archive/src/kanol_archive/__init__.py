"""Kanol archive: the regional electronic archive (SAE).

Today it receives every acknowledged acte, fetches its documents from actes-pes by their
claim checks, checks and stores them with their SHA-512 fingerprint, and records one
archive per versement. A later step turns each versement into a SEDA 2.x transfer.
"""
