"""Load: land one source's extraction in the lake as one commit with its state.

`extraction` is what a source hands over (the `Source` protocol and its `Extraction`),
`schema` plans the table's schema under the source's contract and coerces batches to it,
`quarantine` keeps the rows that do not fit, `land` commits quarantine, rows and state.
"""
from engine.load.extraction import Extraction, Source
from engine.load.land import Landing, land
from engine.load.quarantine import Quarantine
from engine.load.schema import SchemaPlan

__all__ = ["Extraction", "Landing", "Quarantine", "SchemaPlan", "Source", "land"]
