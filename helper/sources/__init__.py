"""Sources layer: where raw messages come from (files on disk: eml, mbox, Maildir, PDF).

Imports only from :mod:`helper.parse`.
"""
