"""Elasticsearch 8.19 index backend (registered as `elasticsearch`).

Split by job: `connection` (client from args / env), `mapping` (index body, read-back, mismatch check),
`filters` (Haystack filters -> ES DSL), `queries` (kNN / BM25 bodies, RRF), `bulk` (records -> documents
with the shared validation), `sender` (bulk requests under faults: bisection, deadline, reconciled
timeouts), `backend` (the protocol).
"""

from ret2_plugin.extras import require

require("elasticsearch", "the Elasticsearch index backend")  # else a one-line error naming the extra to install

from .backend import ElasticsearchBackend
from .connection import ElasticsearchConnectionError, backend_options_from_args
from .filters import to_es_query
from .sender import DeadlineExceeded, ElasticsearchUnavailable

__all__ = [
    "DeadlineExceeded",
    "ElasticsearchBackend",
    "ElasticsearchConnectionError",
    "ElasticsearchUnavailable",
    "backend_options_from_args",
    "to_es_query",
]
