"""The Lambda API with real boto3 against a real server: the function
operations, Invoke of each type, log tails, function errors and the
service errors boto3 users catch."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, wait_until

from .lambda_samples import HELLO_WORLD, RAISES, lambda_client, zipped


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    return lambda_client(server)


def create(client: Any, name: str, source: str = HELLO_WORLD, **settings: Any) -> dict[str, Any]:
    return client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::000000000000:role/lambda-role",
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": zipped({"lambda_function.py": source})},
        **settings,
    )


@pytest.fixture(scope="module")
def hello(client: Any) -> Iterator[str]:
    create(client, "lambda-hello", MemorySize=256, Timeout=5, Environment={"Variables": {"GREETING": "hi"}})
    yield "lambda-hello"


def test_create_function_answers_its_configuration(client: Any, hello: str) -> None:
    config = client.get_function_configuration(FunctionName=hello)
    assert config["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:lambda-hello"
    assert (config["Handler"], config["MemorySize"], config["Timeout"]) == (
        "lambda_function.lambda_handler",
        256,
        5,
    )
    assert config["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert (config["State"], config["LastUpdateStatus"], config["Version"]) == (
        "Active",
        "Successful",
        "$LATEST",
    )
    assert config["Runtime"].startswith("python3") and config["CodeSize"] > 0
    assert client.get_function(FunctionName=hello)["Configuration"]["FunctionName"] == hello


def test_invoke_request_response_with_the_log_tail(client: Any, hello: str) -> None:
    payload = {"key1": "value1", "key2": "value2"}
    answer = client.invoke(FunctionName=hello, Payload=json.dumps(payload), LogType="Tail")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "1"  # the version that ran
    assert json.loads(answer["Payload"].read()) == "value1"
    log = base64.b64decode(answer["LogResult"]).decode()
    request_id = answer["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: 1"
    assert "value1 = value1" in lines and "value2 = value2" in lines
    assert lines[-2] == f"END RequestId: {request_id}" and lines[-1].startswith(
        f"REPORT RequestId: {request_id}"
    )
    # An ARN names the function as well as its name.
    by_arn = client.invoke(
        FunctionName=f"arn:aws:lambda:us-east-1:000000000000:function:{hello}", Payload=json.dumps(payload)
    )
    assert json.loads(by_arn["Payload"].read()) == "value1"


def test_the_log_tail_is_the_last_4_kb(client: Any) -> None:
    chatty = "def lambda_handler(event, context):\n    for i in range(2000):\n        print(i)\n"
    create(client, "lambda-chatty", chatty)
    answer = client.invoke(FunctionName="lambda-chatty", LogType="Tail")
    log = base64.b64decode(answer["LogResult"])
    assert len(log) == 4096 and log.decode().splitlines()[-1].startswith("REPORT RequestId:")


def test_a_raising_handler_is_an_unhandled_function_error(client: Any) -> None:
    create(client, "lambda-raises", RAISES)
    answer = client.invoke(FunctionName="lambda-raises", Payload=b"{}", LogType="Tail")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("CustomError", "Something went wrong")
    assert error["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert any("lambda_handler" in frame for frame in error["stackTrace"])
    assert "about to fail" in base64.b64decode(answer["LogResult"]).decode()


def test_a_timeout_is_a_function_error_too(client: Any) -> None:
    create(
        client,
        "lambda-slow",
        "import time\ndef lambda_handler(event, context):\n    time.sleep(5)\n",
        Timeout=1,
    )
    answer = client.invoke(FunctionName="lambda-slow")
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "Sandbox.Timedout"


def test_event_invocations_go_through_the_async_queue(client: Any, hello: str, server: Server) -> None:
    answer = client.invoke(
        FunctionName=hello, InvocationType="Event", Payload=json.dumps({"key1": "a", "key2": "b"})
    )
    assert answer["StatusCode"] == 202
    call_id = answer["ResponseMetadata"]["RequestId"]
    wait_until(
        lambda: server.request("GET", f"/system/async/{call_id}").json().get("status") == "succeeded",
        20,
        "the Event invocation to run",
        detail=lambda: server.request("GET", f"/system/async/{call_id}").text,
    )
    result = server.request("GET", f"/system/async/{call_id}").json()["result"]
    assert base64.b64decode(result["body"]) == b'"a"'


def test_dry_run_checks_existence_only(client: Any, hello: str) -> None:
    assert client.invoke(FunctionName=hello, InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="lambda-none", InvocationType="DryRun")


def test_list_functions_pages_with_marker_and_max_items(client: Any) -> None:
    for i in range(3):
        create(client, f"lambda-page-{i}")
    first = client.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and "NextMarker" in first
    names = [
        f["FunctionName"]
        for page in client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
        for f in page["Functions"]
    ]
    assert {"lambda-page-0", "lambda-page-1", "lambda-page-2"} <= set(names)
    assert names == sorted(names) and len(names) == len(set(names))


def test_update_code_and_configuration(client: Any) -> None:
    create(client, "lambda-update", "def lambda_handler(event, context):\n    return 1\n")
    new_code = zipped(
        {
            "lambda_function.py": "import os\ndef lambda_handler(event, context):\n    return [2, os.environ.get('MODE')]\n"
        }
    )
    client.update_function_code(FunctionName="lambda-update", ZipFile=new_code)
    updated = client.update_function_configuration(
        FunctionName="lambda-update", Timeout=7, Environment={"Variables": {"MODE": "fast"}}
    )
    assert updated["Timeout"] == 7
    client.get_waiter("function_updated").wait(FunctionName="lambda-update")
    assert json.loads(client.invoke(FunctionName="lambda-update")["Payload"].read()) == [2, "fast"]


def test_delete_function_then_it_is_not_found(client: Any) -> None:
    create(client, "lambda-gone")
    client.delete_function(FunctionName="lambda-gone")
    for call in (client.get_function, client.delete_function, client.invoke):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            call(FunctionName="lambda-gone")


def test_service_errors_carry_lambdas_types(client: Any, hello: str) -> None:
    with pytest.raises(client.exceptions.ResourceConflictException):
        create(client, hello)
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="not in files"):
        client.create_function(
            FunctionName="lambda-bad-handler",
            Role="r",
            Handler="missing.handler",
            Code={"ZipFile": zipped({"a.py": ""})},
        )
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="invalid function name"):
        create(client, "Lambda_Capitals")
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName=hello, Payload=b"{not json")
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName=hello, Payload=b'"' + b"x" * (7 * 1024 * 1024) + b'"')
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=hello, Qualifier="7")  # no such version


def test_throttling_is_too_many_requests(client: Any, server: Server) -> None:
    server.deploy_ok(
        "lambda-busy",
        "import time\ndef handle(event, context):\n    time.sleep(3)\n",
        max_instances=1,
        max_queue=0,
    )
    slow = threading.Thread(target=lambda: client.invoke(FunctionName="lambda-busy"))
    slow.start()
    wait_until(
        lambda: "lambda-busy" in server.request("GET", "/metrics").text and _busy(server),
        20,
        "the first call to run",
    )
    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.invoke(FunctionName="lambda-busy")
    slow.join()


def _busy(server: Server) -> bool:
    for line in server.request("GET", "/metrics").text.splitlines():
        if line.startswith('faas_sandboxes{state="busy"}'):
            return float(line.split()[-1]) >= 1
    return False


def test_errors_are_lambdas_shape_on_the_wire(server: Server) -> None:
    resp = server.request("GET", "/2015-03-31/functions/lambda-none")
    assert resp.status == 404 and resp.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert set(resp.json()) == {"Type", "Message"} and resp.json()["Type"] == "User"


def test_a_client_error_names_the_operation(client: Any) -> None:
    with pytest.raises(ClientError) as error:
        client.get_function(FunctionName="lambda-none")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


VERSIONED = """def lambda_handler(event, context):
    return {"tag": TAG, "version": context.function_version, "arn": context.invoked_function_arn}
"""


def versioned(tag: str) -> bytes:
    return zipped({"lambda_function.py": f"TAG = {tag!r}\n" + VERSIONED})


def call(client: Any, name: str, **qualified: Any) -> tuple[str, dict[str, Any]]:
    answer = client.invoke(FunctionName=name, **qualified)
    return answer["ExecutedVersion"], json.loads(answer["Payload"].read())


@pytest.fixture(scope="module")
def two_versions(client: Any) -> str:
    name = "lambda-versions"
    client.create_function(
        FunctionName=name,
        Role="r",
        Handler="lambda_function.lambda_handler",
        Code={"ZipFile": versioned("one")},
    )
    client.update_function_code(FunctionName=name, ZipFile=versioned("two"))
    return name


def test_versions_publish_list_and_qualified_calls(client: Any, two_versions: str) -> None:
    name = two_versions
    published = client.publish_version(FunctionName=name)
    assert published["Version"] == "2" and published["FunctionArn"].endswith(f":function:{name}:2")
    listed = client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "2"]
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert call(client, name, Qualifier="1") == ("1", {"tag": "one", "version": "1", "arn": f"{arn}:1"})
    assert call(client, name, Qualifier="$LATEST")[0] == "2"
    assert call(client, f"{name}:1") == call(client, f"{arn}:1")
    assert call(client, name) == ("2", {"tag": "two", "version": "2", "arn": f"{arn}:2"})
    config = client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert (config["Version"], config["FunctionArn"]) == ("1", f"{arn}:1")
    assert client.get_function(FunctionName=name, Qualifier="2")["Configuration"]["Version"] == "2"
    assert client.get_function(FunctionName=name)["Configuration"]["Version"] == "$LATEST"
    for qualifier in ("9", "nope"):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName=name, Qualifier=qualifier)
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_function(FunctionName=name, Qualifier=qualifier)


def test_alias_operations_route_calls(client: Any, two_versions: str) -> None:
    name = two_versions
    created = client.create_alias(FunctionName=name, Name="beta", FunctionVersion="1")
    assert created["AliasArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}:beta"
    assert (created["Name"], created["FunctionVersion"]) == ("beta", "1")
    with pytest.raises(client.exceptions.ResourceConflictException):
        client.create_alias(FunctionName=name, Name="beta", FunctionVersion="2")
    assert call(client, name, Qualifier="beta")[1]["tag"] == "one"
    assert call(client, f"{name}:beta")[0] == "1"
    updated = client.update_alias(
        FunctionName=name,
        Name="beta",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
    )
    assert updated["FunctionVersion"] == "2"
    assert updated["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.5}}
    ran = {call(client, name, Qualifier="beta")[0] for _ in range(12)}
    assert ran == {"1", "2"}
    assert client.get_alias(FunctionName=name, Name="beta")["FunctionVersion"] == "2"
    names = [a["Name"] for a in client.list_aliases(FunctionName=name)["Aliases"]]
    assert names == ["live", "beta"]
    client.update_alias(FunctionName=name, Name="beta", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in client.get_alias(FunctionName=name, Name="beta")
    client.delete_alias(FunctionName=name, Name="beta")
    for operation in (client.get_alias, client.delete_alias, client.update_alias):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            operation(FunctionName=name, Name="beta")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName=name, Qualifier="beta")
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.create_alias(FunctionName=name, Name="gamma", FunctionVersion="9")
