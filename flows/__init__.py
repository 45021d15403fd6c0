"""Prefect flows over Headwater's engine steps: `flows.elt.elt` runs a whole pipeline as one
flow run, its tasks are in flows/tasks.py, and flows/cli.py adds `headwater deploy` and `serve`
to the `headwater` command. Importing this package imports no Prefect."""
