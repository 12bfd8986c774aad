"""Connecting with basic auth, with an API key created through the API, from env vars; bad credentials."""

from __future__ import annotations

import pytest

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend, ElasticsearchConnectionError
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration


def test_basic_auth(es_node, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=8, hosts=es_node.url, basic_auth=es_node.basic_auth)
    assert backend.count() == 0
    assert es_node.password not in repr(backend)
    # "user:password", what a Haystack Secret resolves to
    as_string = ElasticsearchBackend.open(index_name, hosts=es_node.url, basic_auth=":".join(es_node.basic_auth))
    assert as_string.count() == 0


def _create_api_key(es_client, index_name):
    from elasticsearch import BadRequestError

    try:
        return es_client.security.create_api_key(
            name="ret2-test",
            expiration="1h",
            role_descriptors={"writer": {"indices": [{"names": [f"{index_name}*"], "privileges": ["all"]}]}},
        )
    except BadRequestError as exc:  # the .security index needs the analysis-common module
        if "pattern_capture" in str(exc):
            pytest.skip(
                "this Elasticsearch distribution (integ-test-zip) cannot create API keys: "
                "its .security index needs the absent analysis-common module"
            )
        raise


def test_api_key_created_through_the_api(es_client, es_node, index_name):
    key = _create_api_key(es_client, index_name)
    backend = ElasticsearchBackend.open(index_name, dim=8, hosts=es_node.url, api_key=key["encoded"])
    report = backend.add([IndexRecord("a", unit_vectors(1, 8)[0])])
    assert report.written == 1 and backend.count() == 1
    assert key["encoded"] not in repr(backend)
    with pytest.raises(Exception, match="403|unauthorized|security_exception"):  # the key is scoped
        ElasticsearchBackend.open("ret2-not-allowed", dim=8, hosts=es_node.url, api_key=key["encoded"])


def test_invalid_api_key_is_sent_and_rejected(es_node, index_name, monkeypatch):
    monkeypatch.setenv("ELASTICSEARCH_API_KEY", "bm90LWFuLWlkOm5vdC1hLWtleQ==")  # base64 "not-an-id:not-a-key"
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", es_node.username)  # the API key wins over env basic auth
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", es_node.password)
    with pytest.raises(ElasticsearchConnectionError, match="rejected the credentials") as info:
        ElasticsearchBackend.open(index_name, dim=8, hosts=es_node.url)
    assert "bm90LWFu" not in str(info.value)


def test_read_only_user(es_node, index_name):
    """A user with read privileges can search; its writes are refused and reported, not swallowed."""
    if es_node.reader is None:
        pytest.skip("the external node at RET2_ES_URL has no ret2_reader user")
    ElasticsearchBackend.open(index_name, dim=8, **es_node.backend_options()).add(
        [IndexRecord("a", unit_vectors(1, 8)[0])], refresh=True
    )
    reader = ElasticsearchBackend.open(index_name, dim=8, hosts=es_node.url, basic_auth=es_node.reader)
    assert reader.count() == 1
    assert reader.search(unit_vectors(1, 8)[0], top_k=1)[0].id == "a"
    from elasticsearch import AuthorizationException

    with pytest.raises(PermissionError, match=f"not allowed to write to Elasticsearch index '{index_name}'"):
        reader.add([IndexRecord("b", unit_vectors(2, 8)[1])])
    assert reader.count() == 1
    with pytest.raises(AuthorizationException):
        ElasticsearchBackend.open(f"{index_name}-new", dim=8, hosts=es_node.url, basic_auth=es_node.reader)


def test_env_vars(es_node, index_name, monkeypatch):
    monkeypatch.setenv("ELASTICSEARCH_URL", es_node.url)
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", es_node.username)
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", es_node.password)
    monkeypatch.delenv("ELASTICSEARCH_API_KEY", raising=False)
    backend = ElasticsearchBackend.open(index_name, dim=8)
    assert backend.count() == 0


def test_wrong_password_fails_clearly(es_node, index_name):
    with pytest.raises(ElasticsearchConnectionError, match="rejected the credentials") as info:
        ElasticsearchBackend.open(index_name, dim=8, hosts=es_node.url, basic_auth=("elastic", "wrong-password"))
    assert "wrong-password" not in str(info.value)


def test_unreachable_host_fails_clearly(index_name):
    with pytest.raises(ElasticsearchConnectionError, match="cannot reach Elasticsearch at http://127.0.0.1:9"):
        ElasticsearchBackend.open(index_name, dim=8, hosts="http://127.0.0.1:9", max_retries=0, request_timeout=2)
