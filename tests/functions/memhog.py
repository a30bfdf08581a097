def handle(event, context):
    mb = int(event.query.get("mb", "200"))
    data = b"\x01" * (mb * 1024 * 1024)  # written, so every page is really used
    return {"allocated_mb": len(data) // (1024 * 1024)}
