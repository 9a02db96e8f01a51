"""Type-checked by tests/typing/test_typing.py: mypy must flag exactly the marked lines."""

import actors


@actors.actor
def add(x: int, y: int) -> int:
    return x + y


@actors.actor(queue="q")
async def fetch(url: str) -> bytes:
    return b""


add.send(1, 2)
add.send(1, "two")  # E: wrong argument type
add.send(1)  # E: missing argument
fetch.send("https://example.com")
fetch.send(url=3)  # E: wrong argument type
result: int = add.message(1, 2).get_result()
data: bytes = fetch.message("u").get_result()
wrong: str = add.message(1, 2).get_result()  # E: int is not str
