"""JSON in, JSON out: POST {"numbers": [...]} -> count, sum, mean, min, max.

Bad input gets a 400 with a message, the way a real API answers.
"""


def handle(event, context):
    try:
        data = event.json()
    except ValueError as exc:
        return {"statusCode": 400, "body": {"error": f"body is not JSON: {exc}"}}
    numbers = data.get("numbers") if isinstance(data, dict) else None
    if not isinstance(numbers, list) or not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers
    ):
        return {"statusCode": 400, "body": {"error": 'expected {"numbers": [n, ...]}'}}
    if not numbers:
        return {"count": 0, "sum": 0}
    total = sum(numbers)
    return {
        "count": len(numbers),
        "sum": total,
        "mean": total / len(numbers),
        "min": min(numbers),
        "max": max(numbers),
    }
