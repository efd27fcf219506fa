"""sidep-helper: find and print SI-DEP test certificates received by MSSanté mail, locally."""

__version__ = "0.1.0"
