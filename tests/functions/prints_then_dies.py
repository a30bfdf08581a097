"""Prints a line, then runs past its timeout (?how=spin) or its memory
limit (?how=oom): what it printed must survive the kill."""

import sys


def handle(event, context):
    how = event.query.get("how", "spin")
    print(f"printed before the {how} kill by {context.request_id}")
    print("to stderr as well", file=sys.stderr)
    sys.stdout.flush()
    if how == "oom":
        hog = []
        while True:
            hog.append(bytearray(8 * 1024 * 1024))
    while True:
        pass
