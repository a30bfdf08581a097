"""The Lambda API's authentication on a real server: with a token, boto3
requests signed with lambda_access_key_id/lambda_secret_access_key pass,
a wrong secret, a changed body and a signature over 15 minutes old get 403
in Lambda's error shape; without a token, unsigned requests are taken."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.helpers import Server, server_with_config

from .lambda_samples import HELLO_WORLD, lambda_client, zipped

KEY, SECRET = "AKIDFAAS", "faas-lambda-secret"


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("lambda-auth")
    toml = f'lambda_access_key_id = "{KEY}"\nlambda_secret_access_key = "{SECRET}"\n'
    srv = server_with_config(base, toml, token="system-token").start()
    yield srv
    assert srv.stop() == 0, srv.log()[-4000:]


def create_hello(client: Any, name: str) -> None:
    client.create_function(
        FunctionName=name, Role="r", Handler="lambda_function.lambda_handler",
        Code={"ZipFile": zipped({"lambda_function.py": HELLO_WORLD})},
    )  # fmt: skip


def refused(error: pytest.ExceptionInfo[ClientError], code: str) -> None:
    response = error.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == code


def test_requests_signed_with_the_key_pair_pass(signed_server: Server) -> None:
    client = lambda_client(signed_server, KEY, SECRET)
    create_hello(client, "signed-hello")
    answer = client.invoke(FunctionName="signed-hello", Payload=json.dumps({"key1": "a", "key2": "b"}))
    assert json.loads(answer["Payload"].read()) == "a"


def test_a_wrong_secret_or_key_is_403(signed_server: Server) -> None:
    with pytest.raises(ClientError) as error:
        lambda_client(signed_server, KEY, "not-the-secret").list_functions()
    refused(error, "InvalidSignatureException")
    with pytest.raises(ClientError) as error:
        lambda_client(signed_server, "AKIDOTHER", SECRET).list_functions()
    refused(error, "UnrecognizedClientException")


def test_a_body_changed_after_signing_is_403(signed_server: Server) -> None:
    client = lambda_client(signed_server, KEY, SECRET)
    create_hello(client, "signed-tamper")

    def tamper(request: Any, **_: Any) -> None:
        request.body = json.dumps({"key1": "evil", "key2": "x"}).encode()
        request.headers["Content-Length"] = str(len(request.body))

    client.meta.events.register_first("before-send.lambda.Invoke", tamper)
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName="signed-tamper", Payload=json.dumps({"key1": "good", "key2": "x"}))
    refused(error, "InvalidSignatureException")


def test_a_signature_older_than_15_minutes_is_403(signed_server: Server) -> None:
    client = lambda_client(signed_server, KEY, SECRET)
    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=16)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=stale),
        pytest.raises(ClientError) as error,
    ):
        client.list_functions()
    refused(error, "InvalidSignatureException")
    assert "expired" in error.value.response["Error"]["Message"]


def test_unsigned_requests_are_403_with_a_token(signed_server: Server) -> None:
    with pytest.raises(ClientError) as error:
        lambda_client(signed_server, signature_version=UNSIGNED).list_functions()
    refused(error, "MissingAuthenticationTokenException")


def test_without_a_token_unsigned_requests_are_taken(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data").start()
    try:
        client = lambda_client(srv, signature_version=UNSIGNED)
        create_hello(client, "unsigned-hello")
        assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == ["unsigned-hello"]
        # What a web page could send is refused: a form post of a function.
        form = srv.request(
            "POST", "/2015-03-31/functions", body=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert form.status == 415 and form.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
        rebound = srv.request("GET", "/2015-03-31/functions", headers={"Host": "attacker.example"})
        assert rebound.status == 421
    finally:
        assert srv.stop() == 0, srv.log()[-4000:]
