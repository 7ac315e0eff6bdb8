from aurora_rl.prompts.answer_format import (
    build_prompt, compose_answer, direct_answer, normalize, parse_answer,
)


def test_prompt_holds_placeholders_and_normalised_expression():
    assert build_prompt("The Red guitar, on the left.") == (
        "<video> <audio> the reference is : the red guitar , on the left . reason step by step ."
    )


def test_composed_answer_parses_back():
    text = compose_answer("a red guitar on the left .", "the guitar sounds .", "the sounding object .", "guitar")
    assert text.endswith("step 4 : the target is guitar . it is [SEG] .")
    parsed = parse_answer(text)
    assert parsed.well_formed, parsed.problems
    assert parsed.steps == {
        "images": "a red guitar on the left .", "audio": "the guitar sounds .",
        "reference": "the sounding object .", "target": "the target is guitar .",
    }
    assert parsed.target_class == "guitar" and parsed.seg_count == 1 and parsed.ends_with_seg


def test_null_answer_names_nothing():
    assert parse_answer(compose_answer("a .", "b .", "c .", None)).target_class == "nothing"
    assert direct_answer(None) == "it is nothing [SEG] ."


def test_cased_unspaced_real_model_spelling_is_accepted():
    parsed = parse_answer("Step 1: x. Step 2: y. Step 3: z. Step 4: The target is Acoustic Guitar. It is [SEG].")
    assert parsed.well_formed, parsed.problems
    assert parsed.target_class == "acoustic guitar"


def test_reflective_answer_is_judged_by_its_last_attempt():
    first = "step 1 : a . step 2 : b . step 3 : c . step 4 : the target is dog ."
    second = compose_answer("a .", "b .", "c .", "bird")
    parsed = parse_answer(f"{first} wait , let me reconsider . {second}")
    assert parsed.target_class == "bird" and parsed.well_formed
    assert parsed.attempts == 2 and parse_answer(second).attempts == 1 and parse_answer("it is [SEG] .").attempts == 0


def test_malformed_outputs_report_every_problem_and_never_raise():
    assert parse_answer("").problems == [
        "reasoning steps found none, expected [1, 2, 3, 4]", 'no "the target is <class> ."',
        "no [SEG] token", 'does not end with "it is [SEG] ."',
    ]
    two = parse_answer(compose_answer("a .", "b .", "c .", "dog").replace("it is [SEG]", "[SEG] it is [SEG]"))
    assert two.seg_count == 2 and any("2 [SEG]" in p for p in two.problems)
    assert parse_answer("step 1 : a . step 3 : c . the target is dog . it is [SEG] .").problems == [
        "reasoning steps found [1, 3], expected [1, 2, 3, 4]"
    ]
    garbage = parse_answer("\x00\xff" * 500 + " [SEG]")
    assert not garbage.well_formed and garbage.seg_count == 1
    assert parse_answer(None).problems == ["not text (NoneType)"]


def test_normalize_spacing():
    assert normalize("It is [SEG].") == "it is [SEG] ."
    assert normalize("a,b:c") == "a , b : c"
