def handle(event, context):
    return {1, 2, 3}
