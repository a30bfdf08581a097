import os


def handle(event, context):
    # fd 3 is the sandbox's channel to the invoker: write a frame header that
    # claims 4 GiB, then junk.
    os.write(3, b"\xff\xff\xff\xff" + b"garbage" * 10)
    return "unreachable"
