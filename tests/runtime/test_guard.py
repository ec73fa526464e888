import pytest

from qr_edge import Decision, LeakageGuard, load_examples, parse_messages
from qr_edge.text import content_units, is_question, new_content

GUARD = LeakageGuard(load_examples())

EN = parse_messages(
    [
        {"role": "user", "content": "Which is faster for numeric code, NumPy or plain Python loops?"},
        {"role": "assistant", "content": "NumPy is usually much faster, because its loops run in compiled C."},
        {"role": "user", "content": "Why is it faster?"},
    ]
)
ZH = parse_messages(
    [
        {"role": "user", "content": "Rust和Go哪个更适合写命令行工具？"},
        {"role": "assistant", "content": "两者都不错。Go编译快、上手容易；Rust性能更高、内存更安全。"},
        {"role": "user", "content": "那它的学习曲线怎么样？"},
    ]
)


@pytest.mark.parametrize(
    "messages, output, decision",
    [
        (EN, "Why is NumPy faster than plain Python loops?", Decision.REWRITTEN),
        (EN, "Why is it faster?", Decision.UNCHANGED),
        (EN, "  why is it   faster? ", Decision.UNCHANGED),
        (ZH, "Rust的学习曲线怎么样？", Decision.REWRITTEN),
        (ZH, "那它的学习曲线怎么样？", Decision.UNCHANGED),
        # leakage: entities of the bundled examples that the conversation never mentions
        (EN, "Why did Christopher Nolan make it faster?", Decision.REJECTED_LEAKAGE),
        (ZH, "杭州西湖的学习曲线怎么样？", Decision.REJECTED_LEAKAGE),
        (ZH, "Java的学习曲线怎么样？", Decision.REJECTED_LEAKAGE),
        # answering instead of rewriting
        (EN, "Because its loops run in compiled C.", Decision.REJECTED_ANSWER),
        (EN, "Yes, NumPy is faster.", Decision.REJECTED_ANSWER),
        (ZH, "Rust的学习曲线比较陡峭。", Decision.REJECTED_ANSWER),
        # markup, empty, overlong
        (EN, "<user>Why is NumPy faster?</user>", Decision.REJECTED_INVALID),
        (EN, "Why is NumPy faster?<|im_end|>", Decision.REJECTED_INVALID),
        (EN, "", Decision.REJECTED_INVALID),
        (EN, "Why is NumPy faster? " * 10, Decision.REJECTED_INVALID),
        (ZH, "Rust的学习曲线怎么样？" + "Rust和Go哪个更适合写命令行工具" * 3, Decision.REJECTED_INVALID),
        # unfaithful: content found nowhere in the conversation
        (EN, "Why is Fortran with OpenMP on supercomputers faster?", Decision.REJECTED_UNSUPPORTED),
        (ZH, "量子计算机的学习曲线怎么样？", Decision.REJECTED_UNSUPPORTED),
    ],
)
def test_guard_decisions(messages, output, decision):
    verdict = GUARD.check(output, messages)
    assert verdict.decision == decision, verdict.reason


def test_entity_in_the_conversation_is_not_leakage_even_if_examples_have_it():
    conv = parse_messages(
        [
            {"role": "user", "content": "Python和Java哪个更高效？"},
            {"role": "assistant", "content": "计算密集型任务中Java通常更快。"},
            {"role": "user", "content": "那它的内存管理怎么样？"},
        ]
    )
    assert GUARD.check("Java的内存管理怎么样？", conv).decision == Decision.REWRITTEN


def test_units_and_questions():
    assert {"numpy", "loop"} <= content_units("NumPy loops")
    assert not content_units("的了") and not content_units("它们")  # function characters alone never count
    assert "学习" in content_units("学习曲线")
    assert is_question("那它的学习曲线怎么样") and is_question("How tall is it") and not is_question("Tell me more.")


def test_an_inflected_word_or_a_function_word_of_the_conversation_adds_nothing():
    # real rewrites of the held-out test splits that the old units counted as unsupported content
    assert content_units("organizes") == content_units("organized") == content_units("organize")
    assert content_units("opening") == content_units("open") and content_units("running") == content_units("run")
    assert content_units("studies") == content_units("study") and content_units("addresses") == content_units("address")
    assert not content_units("besides after around")
    conv = parse_messages(
        [
            {"role": "user", "content": "Who organizes the ICC world cup?"},
            {"role": "assistant", "content": "The International Cricket Council, since 1975."},
            {"role": "user", "content": "What else did they do?"},
        ]
    )
    assert not new_content("What else has the ICC organized besides the world cup?", [m.content for m in conv])
    olympics = "What else has the ICC organized besides the Olympics?"
    assert new_content(olympics, [m.content for m in conv]) == {"olympic"}


def test_joining_two_conversation_words_is_not_new_content():
    conv = parse_messages(
        [
            {"role": "user", "content": "我周末想做热干面。"},
            {"role": "assistant", "content": "热干面历史悠久。"},
            {"role": "user", "content": "它热量高吗？"},
        ]
    )
    assert GUARD.check("热干面热量高吗？", conv).decision == Decision.REWRITTEN  # "面热" spans two supported words


def test_a_particle_or_a_curly_apostrophe_is_not_new_content():
    # v9's dev and test outputs that the metric counted as unsupported: "的" joined to two words of the
    # conversation, and the query's own "I'd" written with a typographic apostrophe
    zh = parse_messages(
        [
            {"role": "user", "content": "推荐一本小说"},
            {"role": "assistant", "content": "鲁滨逊漂流记"},
            {"role": "user", "content": "作者是谁"},
        ]
    )
    assert not new_content("鲁滨逊漂流记的作者是谁", [m.content for m in zh])
    assert new_content("鲁滨逊漂流记的译者是谁", [m.content for m in zh]) == {"的译", "译者"}
    en = parse_messages(
        [
            {"role": "user", "content": "Why did Bernie Sanders not release his records?"},
            {"role": "assistant", "content": "He said his doctors' letters were enough."},
            {"role": "user", "content": "Okay, I'd like to know more about his decision."},
        ]
    )
    rewrite = "Okay, I’d like to know more about Bernie Sanders’ decision."
    assert not new_content(rewrite, [m.content for m in en])
    assert GUARD.check(rewrite, en).decision == Decision.REWRITTEN


@pytest.mark.parametrize(
    "history, query, rewrite",
    [
        (
            ["Winnie Madikizela-Mandela: early life", "When did she meet Nelson Mandela?", "In 1957, in Johannesburg."],
            "What happened next?",
            "What happened next after Winnie Madikizela-Mandela met Nelson Mandela?",
        ),
        (
            ["Are genetically modified foods labelled in the European Union?", "Yes, the EU requires labels."],
            "What are the rules?",
            "What are the EU rules regarding labeling of genetically modified foods?",
        ),
    ],
)
def test_a_rewrite_may_be_as_long_as_the_query_plus_what_it_copies(history, query, rewrite):
    """Two right rewrites the old length limit (query + 40 characters) threw away; inventing as much still fails."""
    roles = ["user" if i % 2 == 0 else "assistant" for i in range(len(history))]
    messages = parse_messages(
        [*({"role": r, "content": c} for r, c in zip(roles, history, strict=True)), {"role": "user", "content": query}]
    )
    assert len(rewrite) > len(query) + 40
    assert GUARD.check(rewrite, messages).decision == Decision.REWRITTEN
    invented = query.rstrip("?") + " in the long and complicated story of the famous couple from far away?"
    verdict = GUARD.check(invented, messages)
    assert verdict.decision == Decision.REJECTED_INVALID and "not copied from earlier turns" in verdict.reason


def _chat(question: str, answer: str, query: str) -> list:
    return parse_messages(
        [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": query},
        ]
    )


def test_an_output_stuck_in_a_loop_is_rejected_unless_the_query_repeats_the_same():
    verdict = GUARD.check(
        "所以我打算给你寄过去的寄过去的寄过去的寄过去的", _chat("作业写完了吗", "写完了", "所以我打算给你寄过去")
    )
    assert verdict.decision == Decision.REJECTED_INVALID and "repeats itself" in verdict.reason
    laugh = _chat("作业写完了吗", "写完了", "哈哈哈哈哈哈作业呢")
    assert GUARD.check("哈哈哈哈哈哈作业写完了吗", laugh).decision == Decision.REWRITTEN


def test_an_output_that_only_respells_the_query_keeps_the_query():
    about = ("Tell me about the Irish Wolfhound.", "The Irish Wolfhound is one of the tallest dog breeds.")
    verdict = GUARD.check(
        "How much does an Irish Wolfhound weigh?", _chat(*about, "How much does a Irish Wolfhound weigh?")
    )
    assert verdict.decision == Decision.UNCHANGED and "adds nothing" in verdict.reason
    assert (
        GUARD.check("How tall is the Irish Wolfhound?", _chat(*about, "How tall is it?")).decision == Decision.REWRITTEN
    )


@pytest.mark.parametrize("apostrophe", ["'", "’"])
def test_an_answer_opener_is_caught_with_either_apostrophe(apostrophe: str):
    # the query is no question, so only the opener check can tell this output is an answer
    messages = parse_messages([*EN[:2], {"role": "user", "content": "Tell me more about NumPy's speed."}])
    answer = f"It{apostrophe}s faster because NumPy loops run in compiled C."
    assert GUARD.check(answer, messages).decision == Decision.REJECTED_ANSWER
