"""The prefecture side of actes: @CTES formats, packaging, and the gateway port."""
