"""Charts (Altair), exports (HTML/SVG/PNG/JSON, offline) and the self-contained HTML report."""
