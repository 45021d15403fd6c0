"""Reading an old version of a table whose data files VACUUM may have deleted: which version
that is, and the oldest one from which on every version can still be read."""
from __future__ import annotations

from deltalake import DeltaTable

from engine.errors import ConfigError
from engine.lake.storage import arrow_dataset, missing_files, storage_errors


def check_readable(table: DeltaTable, name: str, uri: str, current: set[str],
                   storage_options: dict[str, str] | None) -> None:
    """Raise ConfigError when `table` (loaded at an old version of the table `name` at `uri`)
    references data files that are gone, naming the oldest version that can still be read.
    `current` holds the files of the latest version, which VACUUM always keeps."""
    checked: dict[str, bool] = {}  # file -> present

    def gone(at: DeltaTable) -> list[str]:
        older = [f.path for f in arrow_dataset(at, storage_options).get_fragments() if f.path not in current]
        lost = set(missing_files(uri, [f for f in older if f not in checked], storage_options))
        checked.update({f: f not in lost for f in older if f not in checked})
        return [f for f in older if not checked[f]]

    version = table.version()
    with storage_errors(f"cannot read the lake table at {uri}"):
        missing = gone(table)
        if not missing:
            return
        latest = DeltaTable(uri, storage_options=storage_options)
        oldest = latest.version()  # the oldest version from which on every one can be read
        while oldest - 1 > version and not gone(DeltaTable(uri, version=oldest - 1, storage_options=storage_options)):
            oldest -= 1
        history = latest.history()
    vacuums = [c["version"] for c in history if c.get("operation") == "VACUUM END"]
    by = f"; the latest VACUUM is version {vacuums[0]}" if vacuums else ""
    raise ConfigError(f"version {version} of {name} was vacuumed ({len(missing)} of its "
                      f"data files are gone{by}); the oldest readable is {oldest}",
                      "read that version or a later one (`headwater history` lists them)")
