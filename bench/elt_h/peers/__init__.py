"""The peers ELT-H compares Headwater with, one module each, all with the same `run` signature:
`run(sources, schemas, fmt, workdir, stages)` reads the source files, writes them to Parquet
under `workdir/land` (land), computes the three models (transform) and writes them to
`workdir/warehouse.duckdb` (publish)."""
