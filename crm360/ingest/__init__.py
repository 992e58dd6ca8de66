"""Getting the sources' records into ``raw``: the contract and sources.yml (sources), finding and
reading drops (drops, csvfile, jsonfile), checking their values (validate), loading them as one
attempt (loader, batch), SQL sources (sql), the load attempts and ledger (ledger), and bounded samples
of a drop for the dry run (sample).

The names below are the layer's API; the modules hold the rest."""

from crm360.ingest.batch import LOAD_WORKERS_ENV, MAX_RECORD_DEFAULT, IngestError, LoadResult, load_workers
from crm360.ingest.drops import Drop, bindings, discover, file_date, sha256_of
from crm360.ingest.loader import load_source
from crm360.ingest.sources import CONTRACT

SOURCES = CONTRACT  # source name -> the raw tables it feeds

__all__ = ["CONTRACT", "LOAD_WORKERS_ENV", "MAX_RECORD_DEFAULT", "SOURCES", "Drop", "IngestError", "LoadResult",
           "bindings", "discover", "file_date", "load_source", "load_workers", "sha256_of"]
