"""The per-host ready map (issue #17): every server's documents rendered once per
change by one renderer per host (``renderer.py``, its process ``process.py``),
kept in a memory-mapped LMDB file (``store.py``) that every API worker reads
(``api/ready.py``); the entry format is ``codec.py``."""
