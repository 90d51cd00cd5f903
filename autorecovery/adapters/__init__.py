"""Adapters: PostgreSQL repositories, Redis locks and keys, agent clients (the ports' implementations)."""
