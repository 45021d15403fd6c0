"""Source constructors: `sources.files(...)`, `sources.sql(...)`."""
from engine.load.extraction import Extraction, Source
from engine.sources.files import FileSource, files
from engine.sources.sql import SqlSource, sql

__all__ = ["Extraction", "FileSource", "Source", "SqlSource", "files", "sql"]
