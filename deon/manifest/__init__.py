"""Manifests: a selection of objects frozen to exact bytes (`deon freeze`), pulled back
exactly (`deon pull --manifest`) and compared (`deon diff`).

- `format`: the file format (README "Manifest format"): writing, reading, verifying,
  comparing. Pure: bytes in, bytes out, no catalog and no S3.
- `freeze`: a manifest from the catalog's rows (read-only).
- `fetch`: downloading exactly a manifest's bytes through the transfer engine.
"""
