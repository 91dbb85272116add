"""Storage: tables and migrations, the content-addressed photo store, gallery queries, audit, integrity, backup.

Knows nothing of the matching engine: features are files it records, not models it runs.
"""
