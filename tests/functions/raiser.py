def handle(event, context):
    print("about to fail")
    raise ValueError("boom: " + event.text)
