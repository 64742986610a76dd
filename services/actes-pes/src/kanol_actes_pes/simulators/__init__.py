"""Simulators of the national systems actes-pes talks to; named as such, never the real thing."""
