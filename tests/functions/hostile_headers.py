"""Answers with response headers that break the bounds of a header block, as
the query asks: ?ctrl=HEX (a value holding that character), ?count=N (N
headers), ?field=N (one value of N bytes), ?total=N (five values of N bytes)."""


def handle(event, context):
    q = event.query
    if "ctrl" in q:
        headers = {"X-Evil": "a" + chr(int(q["ctrl"], 16)) + "b"}
    elif "count" in q:
        headers = {f"X-H{i}": "v" for i in range(int(q["count"]))}
    elif "field" in q:
        headers = {"X-Big": "v" * int(q["field"])}
    elif "total" in q:
        headers = {f"X-Big{i}": "v" * int(q["total"]) for i in range(5)}
    else:
        headers = {}
    return {"statusCode": 200, "headers": headers, "body": "served"}
