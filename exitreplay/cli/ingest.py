"""`exitreplay info` and `exitreplay convert` (placeholder wiring, filled by the ingest work)."""
