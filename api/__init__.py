"""The HTTP API (FastAPI): hosts, manual activation, clusters, audit, plan, health and metrics."""
