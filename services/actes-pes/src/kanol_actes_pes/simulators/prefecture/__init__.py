"""A simulated prefecture behind a simulated @CTES gateway, run as its own process.

``python -m kanol_actes_pes.simulators.prefecture --port 8090``. Its state (transmissions
received, replies queued) lives in a SQLite file (``--state``), so it survives a restart.
"""
