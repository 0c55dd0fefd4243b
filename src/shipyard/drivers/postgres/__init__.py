"""PostgreSQL servers Shipyard manages: files and configuration (config.py, pure), the
server's lifecycle and SQL (engine.py)."""
