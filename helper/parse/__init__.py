"""Parsing layer: bytes in, certificate records out (no storage, no I/O beyond the bytes given).

Modules: ``mime`` (tolerant MIME reader), ``sidep`` (everything specific to the SI-DEP format),
``message`` (one message or saved PDF → certificate outcomes), ``identifiers`` (FINESS, INS),
``text`` (folding, dates, names, HTML), ``pdftext`` (bounded PDF text extraction).
"""
