"""The demo behind `headwater demo`: photo popularity, a daily training set for a model that
predicts which photos get liked. `generate` makes the app data, `daily` lives more days,
`models` and `pipeline` are the pipeline over it (examples/photo_popularity/pipeline.py runs
the same pipeline from a file)."""
