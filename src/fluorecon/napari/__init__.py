"""napari plugin: thin widgets over fluorecon's public API (no algorithm lives here).

Declared by ``napari.yaml`` (entry point ``napari.manifest``). Importing this package does not import
napari or Qt; the widgets, reader and sample data live in private modules loaded by napari on demand.
Install with ``pip install 'fluorecon[napari]'``.
"""
