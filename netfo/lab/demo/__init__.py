"""`netfo demo`: the document's live migration under streams, analysed."""
from .run import cmd_demo  # noqa: F401
