"""The container's command: `python -m function.server [--host H] [--port P]`.

functions-framework's own server, as its CLI starts it (gunicorn running one uvicorn worker, the
app from `create_app`), with an HTTP parser whose request head is bounded. The CLI passes no
options to the server: gunicorn's `limit_request_line` (set to 0, unlimited, by
functions-framework), `limit_request_fields` and `limit_request_field_size` apply to gunicorn's
own parser only, which a uvicorn worker does not use; and uvicorn's httptools parser has no limit
at all. So the worker here parses with `BoundedHttpToolsProtocol`: a request line and headers
over `MAX_HEAD_BYTES`, or more than `MAX_HEADERS` header fields, are a 431 that closes the
connection, before the app sees the request.
"""

import argparse
import os

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

TARGET = "predict"
WORKER_CLASS = "function.server.Worker"
# The request line and every header, in bytes: twice the 64 KiB that common front ends allow a
# request's headers, so that the headers Google's front end adds to what it lets through never
# reach this bound; and small for memory: 80 requests at the limit hold 10 MiB.
MAX_HEAD_BYTES = 128 * 1024
# gunicorn's own default for `limit_request_fields`.
MAX_HEADERS = 100


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded.

    httptools gathers a header's name and value itself before it hands them over, so a bound
    checked on each header alone would come after the memory is spent: the bytes received while
    a head is incomplete are counted as they arrive, and the parsed head checked once whole.
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 (uvicorn's signature)
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0  # received in reads that began and ended inside the head
        self._head_size = 0  # the head as parsed: URL, names and values
        self._header_count = 0
        self._refusal: str | None = None

    def data_received(self, data: bytes) -> None:
        began_in_head = self._in_head
        super().data_received(data)
        # A read that began and ended inside a head is all head; one that ended it is checked
        # when the head is whole (on_headers_complete).
        if began_in_head and self._in_head and self._refusal is None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(f"expected a request line and headers of at most {MAX_HEAD_BYTES} "
                             f"bytes, got more than {self._head_bytes}")  # fmt: skip

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._refusal = f"expected at most {MAX_HEADERS} header fields, got more"
            raise _HeadRefused()  # httptools stops parsing; send_400_response answers
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_size > MAX_HEAD_BYTES:
            self._refusal = (
                f"expected a request line and headers of at most {MAX_HEAD_BYTES} bytes, got "
                f"{self._head_size}"
            )
            raise _HeadRefused()
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused: a 431 when the refusal is ours."""
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def _refuse(self, message: str) -> None:
        self._refusal = message
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


class _HeadRefused(Exception):
    """Raised from a parser callback: httptools stops and reports it as a parser error."""


class Worker(UvicornWorker):
    """functions-framework's worker class, parsing with `BoundedHttpToolsProtocol`."""

    CONFIG_KWARGS = {"loop": "auto", "http": BoundedHttpToolsProtocol}


def main(argv: list[str] | None = None) -> None:
    import functions_framework
    from functions_framework._http import create_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # As functions-framework's CLI: HOST and PORT from the environment by default.
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    app = functions_framework.create_app(target=TARGET)
    create_server(app, False, worker_class=WORKER_CLASS).run(args.host, args.port)


if __name__ == "__main__":
    main()
