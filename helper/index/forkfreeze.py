"""Imported last by the parse workers' fork server (``helper.index.pool.service_start_method``), never
by the service: ``gc.freeze()`` there puts every object imported so far out of the collector's
reach, so that a worker's garbage collections do not write to them and each worker keeps sharing
those pages with the server and its siblings (copy-on-write) instead of copying them all."""

import gc

gc.freeze()
