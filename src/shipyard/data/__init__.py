"""Managed datastores: PostgreSQL databases (and read replicas) and Key Value instances, their
backups, point-in-time recovery and restore drills."""
