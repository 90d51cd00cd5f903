"""Services over fakes, one module per service (and per safety protection)."""
