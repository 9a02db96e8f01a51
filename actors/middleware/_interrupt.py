"""Raising an exception into another thread: how sync actors are interrupted.

Time limits, shutdown notifications and cancellation all stop a running sync actor the same
way, so they share this one helper.
"""

from __future__ import annotations


def interrupt_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raise `exception` in the thread `thread_id` at its next bytecode (None clears it).

    Pure-Python code stops within milliseconds; C code and blocking calls only when they
    return to the interpreter, which is why a hard time limit exists.
    """
    import ctypes  # here: most workers never interrupt an actor

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exception is None else ctypes.py_object(exception)
    )
