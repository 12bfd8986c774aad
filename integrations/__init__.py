"""Index backends (FAISS, Elasticsearch, in-memory) and Haystack components; installed as
`ret2_plugin.integrations`."""
