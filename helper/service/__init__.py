"""Service layer: the loopback API, the serve loop, folder watching, printing, audit and token.

Imports from the layers below (:mod:`helper.index`, :mod:`helper.sources`, :mod:`helper.parse`).
"""
