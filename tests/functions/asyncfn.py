import asyncio


async def handle(event, context):
    await asyncio.sleep(0.01)
    return {"async": True, "cold": context.cold_start, "function": context.function_name}
