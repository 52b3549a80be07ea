"""S3 -> catalog: the incremental mirror and published snapshots."""
