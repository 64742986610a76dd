"""The port to Hélios and its HTTP adapter."""
