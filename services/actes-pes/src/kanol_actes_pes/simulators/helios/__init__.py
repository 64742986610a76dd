"""A simulated Hélios (DGFiP) gateway for PES V2 flows: not the real thing."""
