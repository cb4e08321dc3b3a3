"""Replay of state-deferral policies over exit episodes: policies and costs are data (TOML)."""
