"""The most memory the service can take, as a function of its concurrency and body limit: for a
check that refuses a CONCURRENCY / MAX_BODY_BYTES / memory combination that could exceed the
instance's memory.

    worst_case_bytes(c, b) = IDLE_BYTES + PARSE_BYTES_PER_BODY_BYTE * b
                             + c * (HELD_BYTES_PER_BODY_BYTE * b + HELD_BYTES_PER_REQUEST)

- IDLE_BYTES: the process serving, the example model loaded (Python, onnxruntime, numpy).
- one parse at a time: bodies are parsed on the event loop, one after the other, and nothing of
  a parse outlives its request's decoding, so only the largest parse counts, once. JSON of lists
  nested a thousand deep parses into 32 bytes of lists a byte; with the copies an error message
  reads, about 58 bytes a byte at the peak.
- what each request in flight holds while it waits: at most its body, as it arrives (the
  longest wait), then its typed rows, the id it echoes and its answer, each smaller.

Measured with `python -m bench.memory` (bench/memory.py): the server as the container runs it,
on loopback, sent the worst bodies each limit allows (every route, every dialect: deep lists,
empty objects, objects of many keys, a `parameters` object of empty objects, the longest id echoed), by every
connection at once, then while all connections but one hold an upload one byte short, then with
answers left unread; the figure is the worker's peak resident set (VmHWM in /proc) plus the
arbiter's private pages. Peaks measured (MiB), concurrency x body limit:

                   256 KiB   1 MiB   2 MiB
    1 connection     113      157     217
    40 connections   126      197     290
    80 connections   137      233     367

A least-squares reading gives 98 MiB + 58.5 b + c (0.91 b + 0.08 MiB); the constants below round
each term up. A model larger than the example adds its own memory once loaded (`model_bytes`),
which the service cannot know before it loads it.
"""

MIB = 1024 * 1024
IDLE_BYTES = 100 * MIB
PARSE_BYTES_PER_BODY_BYTE = 64
HELD_BYTES_PER_BODY_BYTE = 1
HELD_BYTES_PER_REQUEST = MIB // 8
# The share of the instance's memory the worst case may take: the rest is for what no
# measurement here saw (allocator fragmentation over days, a larger model's runs).
HEADROOM = 0.25


def worst_case_bytes(concurrency: int, max_body_bytes: int, *, model_bytes: int = 0) -> int:
    """The most memory the service takes with `concurrency` requests in flight, each body up
    to `max_body_bytes`, serving a model that takes `model_bytes` more than the example's."""
    held = HELD_BYTES_PER_BODY_BYTE * max_body_bytes + HELD_BYTES_PER_REQUEST
    return (
        IDLE_BYTES
        + model_bytes
        + PARSE_BYTES_PER_BODY_BYTE * max_body_bytes
        + concurrency * held
    )


def fits(
    concurrency: int, max_body_bytes: int, memory_bytes: int, *, model_bytes: int = 0
) -> bool:
    """Whether the worst case leaves HEADROOM of an instance of `memory_bytes` free."""
    worst = worst_case_bytes(concurrency, max_body_bytes, model_bytes=model_bytes)
    return worst <= memory_bytes * (1 - HEADROOM)
