"""Tests for the sans-I/O SSE decoder (WHATWG HTML 9.2.6 "Interpreting an event stream").

Plain synchronous tests, h11 style. Besides one test per rule of the spec, two
property tests pin the decoder down: chunking never changes the result, and the
result equals that of ``spec_reference`` below, a deliberately slow, literal,
character-by-character second reading of the spec that shares no code with the
decoder.
"""

from __future__ import annotations

import itertools
import json
import pickle

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trioclient.sse
from trioclient.sse import ServerSentEvent, SSEDecoder, SSEError

# ----------------------------------------------------------------------------------
# helpers


def decode_all(stream: bytes, **kwargs: int) -> list[ServerSentEvent]:
    """Feed a whole stream in one chunk, then close."""
    decoder = SSEDecoder(**kwargs)
    events = decoder.feed(stream)
    events += decoder.close()
    return events


def decode_chunks(chunks: list[bytes], **kwargs: int) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events, decoder


def split_at(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def spec_reference(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None]:
    """The spec's algorithm transcribed step by step, for differential testing.

    Returns the dispatched events, the last event ID buffer and the reconnection
    time at the end of the stream. Deliberately naive: one-shot decoding, a
    character loop for line endings, a string data buffer with a trailing LF.
    """
    text = stream.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif ch == "\n":
            lines.append(current)
            current = ""
        else:
            current += ch
        i += 1
    # `current` is an unterminated final line: part of an incomplete event, dropped.
    events: list[ServerSentEvent] = []
    data = ""
    event_type = ""
    last_id = ""
    retry: int | None = None
    block_retry: int | None = None
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                block_retry = None
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append(
                ServerSentEvent(
                    event=event_type if event_type else "message",
                    data=data,
                    id=last_id if last_id else None,
                    retry=block_retry,
                )
            )
            data = ""
            event_type = ""
            block_retry = None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\x00" not in value:
                last_id = value
        elif field == "retry":
            if value and all(c in "0123456789" for c in value):
                retry = block_retry = int(value)
    return events, last_id, retry


# ----------------------------------------------------------------------------------
# the public surface


def test_public_module_exports_and_names_itself() -> None:
    assert set(trioclient.sse.__all__) == {"SSEDecoder", "SSEError", "ServerSentEvent"}
    for name in trioclient.sse.__all__:
        assert getattr(trioclient.sse, name).__module__ == "trioclient.sse"
    assert issubclass(SSEError, ValueError)


def test_server_sent_event_defaults_are_a_plain_message() -> None:
    event = ServerSentEvent()
    assert (event.event, event.data, event.id, event.retry) == ("message", "", None, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.data = "x"  # type: ignore[misc]


def test_server_sent_event_pickles_through_public_module() -> None:
    event = ServerSentEvent(event="e", data="d", id="1", retry=5)
    assert pickle.loads(pickle.dumps(event)) == event


def test_json_helper_parses_data() -> None:
    assert ServerSentEvent(data='{"a": [1, 2]}').json() == {"a": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        ServerSentEvent(data="[DONE]").json()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_event_size_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=bad)  # type: ignore[arg-type]


def test_feed_rejects_str_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="takes bytes, got str"):
        SSEDecoder().feed("data: x\n\n")  # type: ignore[arg-type]


def test_feed_accepts_bytearray_and_memoryview() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(bytearray(b"data: a\n")) == []
    assert decoder.feed(memoryview(b"\n")) == [ServerSentEvent(data="a")]


# ----------------------------------------------------------------------------------
# line endings


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_each_line_ending_ends_lines(eol: str) -> None:
    stream = f"event: a{eol}data: 1{eol}data: 2{eol}{eol}data: 3{eol}{eol}".encode()
    assert decode_all(stream) == [
        ServerSentEvent(event="a", data="1\n2"),
        ServerSentEvent(data="3"),
    ]


def test_mixed_line_endings_in_one_stream() -> None:
    stream = b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r"
    assert decode_all(stream) == [ServerSentEvent(data="a\nb\nc"), ServerSentEvent(data="d")]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    # The CR already ends the data line; the LF in the next chunk must not be read
    # as a second, empty line (which would dispatch the event too early).
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent(data="a\nb")]
    assert decoder.feed(b"\n") == []  # the LF half of the blank line's CRLF


def test_cr_then_lf_in_later_empty_feeds_still_pairs() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(data="a")]


def test_cr_cr_is_two_line_endings() -> None:
    assert decode_all(b"data: a\r\r") == [ServerSentEvent(data="a")]


def test_cr_skip_survives_a_feed_that_decodes_to_nothing() -> None:
    # After the CR, a chunk holding half a character decodes to no text at all; the
    # character then completes a field line of its own ("é", ignored), whose LF is
    # a real line ending, not the pair of the earlier CR.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\xc3") == []
    assert decoder.feed(b"\xa9\n") == []
    assert decoder.feed(b"\n") == [ServerSentEvent(data="a")]


# ----------------------------------------------------------------------------------
# decoding: UTF-8, BOM


def test_leading_bom_is_stripped() -> None:
    assert decode_all(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent(data="x")]


def test_bom_split_across_feeds_is_stripped() -> None:
    events, _ = decode_chunks([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])
    assert events == [ServerSentEvent(data="x")]


def test_bom_only_stripped_once() -> None:
    # A second BOM is part of the first field name, so the line is an unknown field.
    assert decode_all(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []
    assert decode_all(b"\xef\xbb\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n") == [
        ServerSentEvent(data="x")
    ]


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"], ids=["UTF-16LE", "UTF-16BE"])
def test_utf16_bom_is_not_honoured(bom: bytes) -> None:
    # The stream is always UTF-8: a UTF-16 BOM is two U+FFFD glued to the first
    # field name, which makes that line an unknown field.
    assert decode_all(bom + b"data:1\n\ndata:2\n\n") == [ServerSentEvent(data="2")]


def test_bom_not_at_start_of_data_is_kept() -> None:
    assert decode_all(b"data: \xef\xbb\xbfx\n\n") == [ServerSentEvent(data="\ufeffx")]


def test_bom_alone_in_first_feed_then_stream() -> None:
    events, _ = decode_chunks([b"\xef\xbb\xbf", b"\xef\xbb\xbfdata: x\n\n", b"data: y\n\n"])
    assert events == [ServerSentEvent(data="y")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert decode_all(b"data: a\xffb\xc3(\n\n") == [ServerSentEvent(data="a\ufffdb\ufffd(")]


def test_multibyte_character_split_across_feeds() -> None:
    stream = "data: h€llo 🎉\n\n".encode()
    events, _ = decode_chunks(bytewise(stream))
    assert events == [ServerSentEvent(data="h€llo 🎉")]


def test_truncated_multibyte_at_close_is_dropped_quietly() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\ndata: \xe2\x82") == [ServerSentEvent(data="x")]
    assert decoder.close() == []


# ----------------------------------------------------------------------------------
# fields


def test_comment_lines_are_ignored() -> None:
    stream = b": keep-alive\ndata: a\n:data: nope\n\n:\n\n"
    assert decode_all(stream) == [ServerSentEvent(data="a")]


def test_multiple_data_lines_are_joined_with_lf() -> None:
    assert decode_all(b"data: a\ndata: b\ndata:\ndata: c\n\n") == [
        ServerSentEvent(data="a\nb\n\nc")
    ]


def test_only_one_leading_space_is_removed() -> None:
    assert decode_all(b"data:  two\ndata:\tt\ndata:none \n\n") == [
        ServerSentEvent(data=" two\n\tt\nnone ")
    ]


def test_value_keeps_later_colons() -> None:
    assert decode_all(b'data: {"a": "b:c"}\n\n') == [ServerSentEvent(data='{"a": "b:c"}')]


def test_data_without_colon_is_an_empty_data_line() -> None:
    assert decode_all(b"data\n\n") == [ServerSentEvent(data="")]
    assert decode_all(b"data\ndata\n\n") == [ServerSentEvent(data="\n")]


def test_field_names_are_case_sensitive_and_exact() -> None:
    assert decode_all(b"Data: a\ndata : b\n data: c\n\n") == []


def test_event_field_sets_type() -> None:
    assert decode_all(b"event: update\ndata: x\n\n") == [ServerSentEvent(event="update", data="x")]


def test_last_event_field_wins_and_empty_means_message() -> None:
    assert decode_all(b"event: a\nevent: b\ndata: x\n\nevent:\ndata: y\n\n") == [
        ServerSentEvent(event="b", data="x"),
        ServerSentEvent(event="message", data="y"),
    ]


def test_event_type_resets_after_dispatch() -> None:
    assert decode_all(b"event: a\ndata: 1\n\ndata: 2\n\n") == [
        ServerSentEvent(event="a", data="1"),
        ServerSentEvent(data="2"),
    ]


def test_event_type_resets_even_when_nothing_is_dispatched() -> None:
    assert decode_all(b"event: a\n\ndata: 1\n\n") == [ServerSentEvent(data="1")]


def test_blank_line_without_data_dispatches_nothing() -> None:
    assert decode_all(b"\n\n\nevent: x\nid: 3\nretry: 5\n\n\r\n") == []


def test_id_is_stamped_and_persists_across_events() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", "8"]
    assert decoder.last_event_id == "8"


def test_id_set_in_block_without_data_still_persists() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 5\n\ndata: a\n\n") == [ServerSentEvent(data="a", id="5")]


def test_empty_id_resets_last_event_id() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\ndata: a\n\nid\ndata: b\n\n")
    assert [e.id for e in events] == ["1", None]
    assert decoder.last_event_id == ""


def test_id_containing_null_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"id: 1\n\nid: 2\x003\ndata: a\n\n")
    assert events == [ServerSentEvent(data="a", id="1")]
    assert decoder.last_event_id == "1"


def test_last_event_id_starts_empty() -> None:
    assert SSEDecoder().last_event_id == ""


def test_retry_with_digits_sets_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.retry is None
    events = decoder.feed(b"retry: 1500\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in events] == [1500, None]
    assert decoder.retry == 1500


@pytest.mark.parametrize(
    "value", [b"", b"-1", b"1.5", b" 10", b"10 ", b"1e3", b"0x10", b"\xd9\xa3", b"\xc2\xb2"]
)
def test_retry_that_is_not_only_ascii_digits_is_ignored(value: bytes) -> None:
    # \xd9\xa3 is ARABIC-INDIC DIGIT THREE and \xc2\xb2 SUPERSCRIPT TWO: digits to
    # str.isdigit(), but not ASCII digits, so not valid here. " 10" has a second
    # space because only one is stripped.
    decoder = SSEDecoder()
    events = decoder.feed(b"retry: 100\n\nretry: " + value + b"\ndata: a\n\n")
    assert events == [ServerSentEvent(data="a")]
    assert decoder.retry == 100


def test_retry_keeps_leading_zeros_meaning() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 0000250\n\n")
    assert decoder.retry == 250


def test_retry_with_thousands_of_digits_does_not_crash() -> None:
    # Python's int() refuses >4300 digits; leading zeros must still parse, and an
    # absurdly long number is ignored rather than crashing the stream.
    decoder = SSEDecoder()
    decoder.feed(b"retry: " + b"0" * 10_000 + b"7\n\n")
    assert decoder.retry == 7
    decoder.feed(b"retry: " + b"9" * 10_000 + b"\ndata: a\n\n")
    assert decoder.retry == 7


def test_unknown_fields_are_ignored() -> None:
    assert decode_all(b"foo: bar\nretryx: 5\ndata: a\nfoo\n\n") == [ServerSentEvent(data="a")]


# ----------------------------------------------------------------------------------
# end of stream and lifecycle


def test_unterminated_final_event_is_discarded_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [ServerSentEvent(data="a")]
    assert decoder.close() == []


def test_final_line_without_terminator_is_discarded() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [ServerSentEvent(data="a")]
    assert decoder.close() == []


def test_trailing_cr_terminates_immediately() -> None:
    # A CR is a complete line ending by itself: no need to wait for a possible LF.
    assert SSEDecoder().feed(b"data: a\r\r") == [ServerSentEvent(data="a")]


def test_feed_after_close_raises_and_close_is_idempotent() -> None:
    decoder = SSEDecoder()
    decoder.close()
    assert decoder.close() == []
    with pytest.raises(RuntimeError, match="after close"):
        decoder.feed(b"data: a\n\n")


def test_openai_stream_shape() -> None:
    chunks = [
        {"id": "c1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": s}}]}
        for s in ["Hel", "lo", "!"]
    ]
    stream = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
    stream += b"data: [DONE]\n\n"
    for split in (1, 7, len(stream)):
        events, _ = decode_chunks([stream[i : i + split] for i in range(0, len(stream), split)])
        assert [e.data for e in events] == [*(json.dumps(c) for c in chunks), "[DONE]"]
        assert [e.json() for e in events[:-1]] == chunks
        assert {e.event for e in events} == {"message"}


def test_one_mebibyte_fed_one_byte_at_a_time() -> None:
    # Linear by construction: a quadratic re-join of the pending line would take
    # minutes on the 256 KiB line here, so this finishing at all is the check.
    long_data = "x" * (256 * 1024)
    small = b"id: 9\nevent: tick\ndata: " + b"y" * 100 + b"\n\n"
    repeats = (1024 * 1024 - len(long_data)) // len(small) + 1
    stream = small * repeats + f"data: {long_data}\r\n\r\n".encode()
    assert len(stream) >= 1024 * 1024
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for i in range(len(stream)):
        events += decoder.feed(stream[i : i + 1])
    assert len(events) == repeats + 1
    assert events[0] == ServerSentEvent(event="tick", data="y" * 100, id="9")
    assert events[-1] == ServerSentEvent(data=long_data, id="9")


# ----------------------------------------------------------------------------------
# max_event_size


def test_event_over_the_limit_raises_naming_size_and_limit() -> None:
    decoder = SSEDecoder(max_event_size=100)
    decoder.feed(b"data: " + b"a" * 60 + b"\n")
    with pytest.raises(SSEError, match=r"max_event_size=100") as info:
        decoder.feed(b"data: " + b"b" * 60 + b"\n")
    assert "127 characters" in str(info.value)  # 61 buffered + a 66-character line


def test_unterminated_line_over_the_limit_raises_while_pending() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    decoder.feed(b"data: ")
    with pytest.raises(SSEError, match="max_event_size=1000"):
        for _ in range(200):
            decoder.feed(b"x" * 10)
    with pytest.raises(SSEError, match="failed earlier"):
        decoder.feed(b"\n\n")


def test_limit_applies_per_event_not_per_stream() -> None:
    decoder = SSEDecoder(max_event_size=50)
    events = []
    for _ in range(100):
        events += decoder.feed(b"data: " + b"z" * 40 + b"\n\n")
    assert len(events) == 100


def test_event_exactly_at_the_limit_is_allowed() -> None:
    # Data buffer "aaaa...\n" (41) plus the next line "data: " + 3 = 9 -> 50.
    decoder = SSEDecoder(max_event_size=50)
    assert decoder.feed(b"data: " + b"a" * 40 + b"\ndata: bcd\n\n") == [
        ServerSentEvent(data="a" * 40 + "\nbcd")
    ]
    decoder = SSEDecoder(max_event_size=49)
    with pytest.raises(SSEError):
        decoder.feed(b"data: " + b"a" * 40 + b"\ndata: bcd\n\n")


def test_large_but_allowed_event() -> None:
    payload = "p" * (3 * 1024 * 1024)
    decoder = SSEDecoder(max_event_size=4 * 1024 * 1024)
    stream = f"data: {payload}\n\n".encode()
    events: list[ServerSentEvent] = []
    for i in range(0, len(stream), 65536):
        events += decoder.feed(stream[i : i + 65536])
    assert events == [ServerSentEvent(data=payload)]


def test_long_comment_counts_towards_the_limit() -> None:
    # The line being read is bounded whatever it turns out to be, or a server could
    # make us buffer an endless comment.
    with pytest.raises(SSEError):
        SSEDecoder(max_event_size=64).feed(b":" + b"c" * 100)


# ----------------------------------------------------------------------------------
# properties

# Streams are built from line-shaped runs of tokens: plain random bytes would rarely
# spell a field name, let alone follow it with a tricky value and a line ending.
_LINE_STARTS = [
    b"",
    b"data",
    b"data:",
    b"data: ",
    b"data:  ",
    b"event: ",
    b"id: ",
    b"id",
    b"retry: ",
    b"retry:",
    b": ",
    b"foo: ",
    b"\xef\xbb\xbfdata: ",  # BOM: stripped only at the very start of the stream
]
_VALUE_TOKENS = [
    b"x",
    b" ",
    b":",
    b"12",
    b"\x00",
    b"\xef\xbb\xbf",  # BOM
    b"\xe2\x82",  # the first two bytes of "€"
    b"\xac",  # its last byte
    b"\xf0\x9f\x8e\x89",  # an emoji: four bytes
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: a digit, but not an ASCII one
    b"\xff",
    b"\xc3",
    b"\r",
    b"\n",
]
_line_tokens = st.tuples(
    st.sampled_from(_LINE_STARTS),
    st.lists(st.one_of(st.sampled_from(_VALUE_TOKENS), st.binary(max_size=3)), max_size=4),
    st.sampled_from([b"\n", b"\r", b"\r\n", b""]),
).map(lambda t: [t[0], *t[1], t[2]])
_token_lists = st.one_of(
    st.lists(st.binary(min_size=1, max_size=200), max_size=1),
    st.lists(_line_tokens, max_size=15).map(lambda lines: [t for line in lines for t in line]),
)
streams = _token_lists.map(b"".join)


@st.composite
def stream_and_chunks(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream and a chunking of it, cut both at random and between tokens.

    Cutting between tokens makes the interesting boundaries likely: between CR and
    LF, inside or right before a BOM, inside a multi-byte character.
    """
    tokens = draw(_token_lists)
    stream = b"".join(tokens)
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(1, len(tokens))]
    cuts = [o for o in offsets if draw(st.booleans())]
    cuts += draw(st.lists(st.integers(0, len(stream)), max_size=10))
    return stream, split_at(stream, cuts)


@given(stream_and_chunks())
@settings(max_examples=300)
def test_chunking_never_changes_the_result(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    whole = SSEDecoder()
    expected = whole.feed(stream)
    events, chunked = decode_chunks(chunks)
    assert events == expected
    assert (chunked.last_event_id, chunked.retry) == (whole.last_event_id, whole.retry)


@given(streams)
@settings(max_examples=200)
def test_byte_at_a_time_matches_whole(stream: bytes) -> None:
    events, _ = decode_chunks(bytewise(stream))
    assert events == decode_all(stream)


@given(stream_and_chunks())
@settings(max_examples=300)
def test_decoder_matches_literal_spec_reading(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    expected_events, expected_id, expected_retry = spec_reference(stream)
    events, decoder = decode_chunks(chunks)
    assert events == expected_events
    assert decoder.last_event_id == expected_id
    assert decoder.retry == expected_retry


@given(stream_and_chunks(), st.integers(1, 40))
@settings(max_examples=200)
def test_arbitrary_bytes_raise_only_sse_error(case: tuple[bytes, list[bytes]], limit: int) -> None:
    stream, chunks = case
    unlimited, _, _ = spec_reference(stream)
    decoder = SSEDecoder(max_event_size=limit)
    events: list[ServerSentEvent] = []
    chunked_failed = False
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
    except SSEError as exc:
        chunked_failed = True
        assert f"max_event_size={limit}" in str(exc)
        with pytest.raises(SSEError):
            decoder.feed(b"data: more\n\n")
    decoder.close()
    # Whatever came out before any failure is exactly what the spec gives.
    assert events == unlimited[: len(events)]
    # Whether the limit is hit does not depend on how the stream was chunked.
    whole_failed = False
    try:
        SSEDecoder(max_event_size=limit).feed(stream)
    except SSEError:
        whole_failed = True
    assert chunked_failed == whole_failed
    if not chunked_failed:
        assert events == unlimited


# Structured streams: random events rendered with random line endings round-trip.

_line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))


@st.composite
def rendered_events(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent], str, int | None]:
    """Render random events; return the stream and what decoding it must give."""
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id = ""
    last_retry: int | None = None
    for _ in range(draw(st.integers(0, 6))):
        block: list[str] = []
        event_type = ""
        data_lines: list[str] = []
        block_retry: int | None = None
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["data", "event", "id", "retry", "comment", "other"]))
            if kind == "data":
                value = draw(_line_text)
                data_lines.append(value)
                if value:
                    # The one optional space after the colon is eaten, so a value
                    # that itself starts with a space needs it.
                    space = " " if value[0] == " " else draw(st.sampled_from([" ", ""]))
                    block.append("data:" + space + value)
                else:
                    block.append(draw(st.sampled_from(["data", "data:", "data: "])))
            elif kind == "event":
                event_type = draw(_line_text)
                block.append("event: " + event_type)
            elif kind == "id":
                last_id = draw(_line_text.filter(lambda s: "\x00" not in s))
                block.append("id: " + last_id)
            elif kind == "retry":
                block_retry = last_retry = draw(st.integers(0, 10**12))
                block.append(f"retry: {block_retry}")
            elif kind == "comment":
                block.append(":" + draw(_line_text))
            else:
                block.append("x-custom: " + draw(_line_text))
        lines += [*block, ""]
        if data_lines:
            expected.append(
                ServerSentEvent(
                    event=event_type or "message",
                    data="\n".join(data_lines),
                    id=last_id or None,
                    retry=block_retry,
                )
            )
        # A block with no data dispatches nothing, but its id and retry persist.
    text = ""
    prev_eol = ""
    for line in lines:
        eol = draw(st.sampled_from(["\n", "\r", "\r\n"]))
        if prev_eol == "\r" and not line and eol == "\n":
            eol = "\r\n"  # CR then a bare LF would read as one CRLF line ending
        text += line + eol
        prev_eol = eol
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + text).encode(), expected, last_id, last_retry


@given(rendered_events(), st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_rendered_events_round_trip(
    case: tuple[bytes, list[ServerSentEvent], str, int | None], data: st.DataObject
) -> None:
    stream, expected, last_id, retry = case
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    events, decoder = decode_chunks(split_at(stream, cuts))
    assert events == expected
    assert decoder.last_event_id == last_id
    assert decoder.retry == retry


def test_feed_raw_gives_the_same_events_as_plain_tuples() -> None:
    stream = b"id: 7\nretry: 250\nevent: update\ndata: a\ndata: b\n\ndata: c\n\n"
    events = SSEDecoder().feed(stream)
    raw = SSEDecoder().feed_raw(stream)
    assert raw == [("update", "a\nb", "7", 250), ("message", "c", "7", None)]
    assert [ServerSentEvent(*event) for event in raw] == events
