"""The server's JSON log lines: formatted off the caller's thread, in order, warnings at once."""

import io
import logging

import orjson

from orchestrator.logs import BufferedLines, JsonFormatter


def _handler(interval: float = 3600.0) -> tuple[logging.Logger, BufferedLines, io.StringIO]:
    stream = io.StringIO()
    handler = BufferedLines(stream, interval=interval)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"orchestrator.test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, handler, stream


def test_info_lines_wait_for_the_writer_and_keep_their_fields_and_time() -> None:
    logger, handler, stream = _handler()
    try:
        logger.info("request", extra={"fields": {"method": "POST", "status": 201}})
        assert stream.getvalue() == ""  # queued, not yet formatted nor written
        handler.flush()
        (line,) = [orjson.loads(text) for text in stream.getvalue().splitlines()]
        assert line["message"] == "request" and line["method"] == "POST" and line["status"] == 201
        assert line["level"] == "info" and line["time"].endswith("+00:00")
    finally:
        handler.close()


def test_a_warning_is_written_at_once_after_the_lines_queued_before_it() -> None:
    logger, handler, stream = _handler()
    try:
        logger.info("first")
        logger.info("second")
        logger.warning("refused", extra={"fields": {"reason": "signature"}})
        lines = [orjson.loads(text) for text in stream.getvalue().splitlines()]
        assert [line["message"] for line in lines] == ["first", "second", "refused"]
        assert lines[-1]["reason"] == "signature"
    finally:
        handler.close()


def test_a_record_that_cannot_be_formatted_does_not_lose_the_others() -> None:
    logger, handler, stream = _handler()
    handler.handleError = lambda record: None  # type: ignore[method-assign]  # quiet, as logging.raiseExceptions=False
    try:
        logger.info("bad %d", "not a number")
        logger.info("good")
        handler.flush()
        assert [orjson.loads(text)["message"] for text in stream.getvalue().splitlines()] == ["good"]
    finally:
        handler.close()


def test_the_writer_thread_writes_queued_lines_by_itself() -> None:
    logger, handler, stream = _handler(interval=0.01)
    try:
        logger.info("later")
        for _ in range(500):  # bounded: up to ~5 s
            if stream.getvalue():
                break
            handler._stopped.wait(0.01)
        assert orjson.loads(stream.getvalue())["message"] == "later"
    finally:
        handler.close()


def test_closing_twice_as_logging_shutdown_does_at_exit_is_quiet() -> None:
    logger, handler, stream = _handler()
    logger.info("last")
    handler.close()
    handler.close()  # logging.shutdown() closes every handler again at exit
    assert orjson.loads(stream.getvalue())["message"] == "last"
