"""00's measurement (helpers/decide.py): made-up facts given in the prompt against the same facts in the weights."""

from helpers.config import make_config
from helpers.decide import QUESTIONS, fact_scores, facts_findings, made_up_facts


def test_the_facts_are_made_up_the_same_way_everywhere():
    facts = made_up_facts()
    assert facts == made_up_facts() and len(facts) == 20 and len(set(facts.values())) == 20
    assert made_up_facts(seed=1) != facts


def test_the_base_model_uses_a_fact_given_in_its_prompt_and_guesses_without_it():
    from helpers.model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(make_config("tiny"))
    scores = fact_scores(model, tokenizer, made_up_facts())
    for question in QUESTIONS:
        assert scores["fact in the prompt"][question] >= 0.8, scores
        assert scores["fact not given"][question] <= 0.3, scores  # chance is 0.05


def test_the_findings_follow_the_numbers_either_way():
    before = {"fact not given": {"asked as trained": 0.05, "asked another way": 0.1},
              "fact in the prompt": {"asked as trained": 1.0, "asked another way": 1.0}}
    stored = {"fact not given": {"asked as trained": 1.0, "asked another way": 0.05},
              "fact in the prompt": {"asked as trained": 0.9, "asked another way": 1.0}}
    transferred = {**stored, "fact not given": {"asked as trained": 1.0, "asked another way": 0.9}}
    assert "stored the sentences more than the facts" in facts_findings(before, stored, 20)
    text = facts_findings(before, transferred, 20)
    assert "transferred to the other question too" in text and "stored the sentences" not in text
