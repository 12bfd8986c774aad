"""Pieces of the Elasticsearch connector that need no node: options from env, redaction, RRF, scores."""

from __future__ import annotations

import pytest

from ret2_plugin.filters import FilterError
from ret2_plugin.integrations.elasticsearch import backend_options_from_args, to_es_query
from ret2_plugin.integrations.elasticsearch.connection import describe, long_running, redact_url, split_basic_auth
from ret2_plugin.integrations.elasticsearch.maintenance import delete_outcome
from ret2_plugin.integrations.elasticsearch.mapping import build_index_body, index_options
from ret2_plugin.integrations.elasticsearch.queries import default_num_candidates, raw_similarity, rrf_fuse

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("URL", "CLOUD_ID", "API_KEY", "USERNAME", "PASSWORD", "CA_CERTS"):
        monkeypatch.delenv(f"ELASTICSEARCH_{name}", raising=False)
    return monkeypatch


def test_options_from_env(clean_env):
    clean_env.setenv("ELASTICSEARCH_URL", "https://a:9200, https://b:9200")
    clean_env.setenv("ELASTICSEARCH_USERNAME", "u")
    clean_env.setenv("ELASTICSEARCH_PASSWORD", "p")
    clean_env.setenv("ELASTICSEARCH_CA_CERTS", "/ca.pem")
    assert backend_options_from_args() == {
        "hosts": ["https://a:9200", "https://b:9200"],
        "basic_auth": ("u", "p"),
        "ca_certs": "/ca.pem",
    }
    clean_env.setenv("ELASTICSEARCH_API_KEY", "k")
    assert backend_options_from_args()["api_key"] == "k" and "basic_auth" not in backend_options_from_args()
    # explicit arguments beat the environment, whatever kind of credential they are
    explicit = backend_options_from_args("http://x:1", username="me", password="pw")
    assert explicit["hosts"] == ["http://x:1"] and explicit["basic_auth"] == ("me", "pw") and "api_key" not in explicit


def test_default_host_and_half_credentials(clean_env):
    assert backend_options_from_args() == {"hosts": ["http://localhost:9200"]}
    with pytest.raises(ValueError, match="both a username and a password"):
        backend_options_from_args(username="only-me")


def test_secrets_redacted():
    assert redact_url("https://elastic:s3cret@h:9200/x") == "https://elastic:***@h:9200/x"
    assert "s3cret" not in describe({"hosts": ["https://elastic:s3cret@h:9200"], "api_key": "zzz"})


def test_rrf_fuse_orders_by_summed_reciprocal_ranks():
    fused = rrf_fuse([["a", "b", "c"], ["c", "d"]], k=1)
    # a: 1/2, b: 1/3, c: 1/4 + 1/2, d: 1/3
    assert [doc for doc, _ in fused] == ["c", "a", "b", "d"]
    assert fused[0][1] == pytest.approx(0.75)
    assert rrf_fuse([["a"], ["b"]], top_k=1) == [("a", pytest.approx(1 / 61))]


def test_raw_similarity_inverts_es_scores():
    for cosine in (-0.8, 0.0, 0.35, 1.0):
        assert raw_similarity((1 + cosine) / 2, "dot_product") == pytest.approx(cosine)
    for inner in (-3.0, -0.2, 0.0, 4.5):
        es_score = 1 / (1 - inner) if inner < 0 else inner + 1
        assert raw_similarity(es_score, "max_inner_product") == pytest.approx(inner)


def test_num_candidates_default_and_cap():
    assert default_num_candidates(3) == 100
    assert default_num_candidates(50) == 500
    assert default_num_candidates(5000) == 10_000


def test_index_options_validation():
    assert index_options("flat") == {"type": "flat"}
    with pytest.raises(ValueError, match="m / ef_construction apply to HNSW"):
        index_options("flat", m=8)
    with pytest.raises(ValueError, match="unknown Elasticsearch index_type"):
        index_options("ivf_pq")


def test_filter_translation_errors_and_shapes():
    assert to_es_query(None) is None
    assert to_es_query({"source": "stamps"}) == {"term": {"source": "stamps"}}  # layout v2: meta at the top level
    assert to_es_query({"source": "stamps"}, "meta.") == {"term": {"meta.source": "stamps"}}  # layout v1
    assert to_es_query({"field": "id", "operator": "==", "value": "a"}) == {"term": {"_id": "a"}}
    with pytest.raises(FilterError, match="needs a scalar value"):
        to_es_query({"field": "meta.a", "operator": "==", "value": {"x": 1}})
    with pytest.raises(FilterError, match="unknown filter operator"):
        to_es_query({"field": "meta.a", "operator": "~", "value": 1})


def test_describe_uses_env_url(clean_env):
    clean_env.setenv("ELASTICSEARCH_URL", "http://user:pw@es.example:9200")
    assert describe({}) == "http://user:***@es.example:9200"


def test_none_filters_translate_as_haystack_reads_them():
    """Haystack reads a missing key as None, like ES (which indexes neither a missing key nor a null)."""
    missing = {"bool": {"must_not": [{"exists": {"field": "a"}}]}}
    assert to_es_query({"field": "meta.a", "operator": "==", "value": None}) == missing
    assert to_es_query({"field": "meta.a", "operator": "!=", "value": None}) == {"bool": {"must_not": [missing]}}
    assert to_es_query({"field": "meta.a", "operator": "in", "value": [None, "x"]}) == {
        "bool": {"should": [{"terms": {"a": ["x"]}}, missing], "minimum_should_match": 1}
    }
    # a range with None matches nothing, in the reference too
    assert to_es_query({"field": "meta.a", "operator": ">", "value": None}) == {"bool": {"must_not": {"match_all": {}}}}
    with pytest.raises(FilterError, match="ISO dates"):
        to_es_query({"field": "meta.a", "operator": ">", "value": "abc"})


def test_basic_auth_string_is_split_on_the_first_colon():
    assert split_basic_auth("elastic:pa:ss") == ("elastic", "pa:ss")
    assert split_basic_auth(("u", "p")) == ("u", "p")
    for bad in ("no-colon-s3cret", ":s3cret", "user:"):
        with pytest.raises(ValueError, match="user:password") as info:
            split_basic_auth(bad)
        assert "s3cret" not in str(info.value)


def test_long_running_calls_are_never_retried_or_timed_out():
    from elasticsearch import Elasticsearch

    client = Elasticsearch("http://localhost:1", request_timeout=30, max_retries=3, retry_on_timeout=True)
    slow = long_running(client)
    assert (slow._request_timeout, slow._max_retries, slow._retry_on_timeout) == (None, 0, False)
    assert client._max_retries == 3  # the shared client keeps its settings


def test_delete_by_query_response_reports_conflicts_and_failures():
    assert delete_outcome("i", {"deleted": 7, "version_conflicts": 2, "failures": []}) == (7, 2)
    with pytest.raises(RuntimeError, match="had failures"):
        delete_outcome("i", {"deleted": 1, "failures": [{"cause": "x"}]})


def test_mapping_similarity_and_meta_templates():
    body = build_index_body(dim=4, multi_vector=False, similarity="dot_product", info=None)
    mappings = body["mappings"]
    assert mappings["properties"]["embedding"]["similarity"] == "max_inner_product"  # accepts non-unit vectors
    assert (
        build_index_body(dim=4, multi_vector=False, similarity="cosine", info=None)["mappings"]["properties"][
            "embedding"
        ]["similarity"]
        == "cosine"
    )
    assert mappings["date_detection"] is False
