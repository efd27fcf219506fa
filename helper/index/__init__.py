"""Index layer: the SQLite/FTS5 store, search, and the ingest pipeline that feeds the store.

Imports only from :mod:`helper.parse` and :mod:`helper.sources`.
"""
