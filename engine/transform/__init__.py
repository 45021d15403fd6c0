"""Transform: models over frames, built from the lake into `models.<name>`.

`models` declares them, `build` plans and runs one build (full or incremental), `reads` shares
whole-table reads between a run's models, `backends/` turns lake tables into pandas, cuDF or
Dask frames and back, `checks/` tests a model's output before it is committed, `features` and
`augment` are helpers model code calls.
"""
