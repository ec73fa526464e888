import json

import pytest

from qr_edge import InvalidConversationError, Message, parse_messages
from qr_edge.errors import InputFileError
from qr_edge.messages import iter_batch, messages_from_queries, read_conversation


def test_accepts_dicts_models_and_wrapped_object():
    msgs = parse_messages({"messages": [{"role": "system", "content": "s"}, Message(role="user", content="q")]})
    assert [m.role for m in msgs] == ["system", "user"]


def test_ignores_extra_openai_keys():
    assert parse_messages([{"role": "user", "content": "q", "name": "bob"}])[0].content == "q"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ([], "empty"),
        ({"foo": 1}, '"messages"'),
        ("hello", "must be a list"),
        ([{"role": "tool", "content": "x"}], "role 'tool'"),
        ([{"role": "user", "content": 3}], "must be a string"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message"),
        (
            [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "user", "content": "b"}],
            "only the first",
        ),
        ([{"role": "user", "content": "   "}], "empty"),
        ([["user", "x"]], "must be an object"),
    ],
)
def test_rejects_bad_conversations_with_a_message_that_says_what_to_fix(raw, fragment):
    with pytest.raises(InvalidConversationError, match=fragment):
        parse_messages(raw)


def test_queries_must_be_a_list():
    with pytest.raises(InvalidConversationError):
        messages_from_queries("it")
    assert [m.role for m in messages_from_queries(["a", "b"])] == ["user", "user"]


def test_read_conversation_errors(tmp_path):
    with pytest.raises(InputFileError, match="cannot read"):
        read_conversation(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        read_conversation(bad)


def test_batch_reports_bad_lines_with_numbers(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "q"}]})
        + "\n\n"
        + "{oops\n"
        + json.dumps({"id": 7, "messages": [{"role": "assistant", "content": "x"}]})
        + "\n"
    )
    items = list(iter_batch(f))
    assert [i.line for i in items] == [1, 3, 4]
    assert items[0].id == "a" and items[0].error is None
    assert "line 3" in items[1].error[1] and "line 4" in items[2].error[1] and items[2].id == 7
    assert items[1].error[0] == "InputFileError" and items[2].error[0] == "InvalidConversationError"
