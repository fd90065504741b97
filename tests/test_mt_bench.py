"""MT-Bench writer: answers, appendix-D judge prompts, judge calls against a local fake server,
ROUGE-L against reference answers (table 3)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from callbacks.mt_bench import JUDGE_TEMPLATE, MTBenchWriter, parse_scores
from datamodules.instruct import read_reference_answers

PREDICTIONS = [[
    {"prediction": "Paris.", "target": {"question_id": 81, "category": "writing",
                                        "turns": ["Capital of France?", "And Spain?"]}},
    {"prediction": "4", "target": {"question_id": 82, "category": "math", "turns": ["2+2?"]}},
]]


class FakeTrainer:
    loggers: list = []
    default_root_dir = "."
    world_size, is_global_zero = 1, True


@pytest.fixture()
def judge_server():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            prompt = body["messages"][0]["content"]
            if "2+2?" in prompt:
                reply = "Assistant 1 is right. Score: 9/10. Assistant 2 is wrong: 2 out of 10"
            else:
                reply = "No scores here."
            payload = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/chat/completions", seen
    server.shutdown()


def test_parse_scores():
    assert parse_scores("A: 7/10, B: 8.5 / 10") == (7.0, 8.5)
    assert parse_scores("first 6 out of 10 then 3 out of 10") == (6.0, 3.0)
    assert parse_scores("only 5/10") is None and parse_scores("") is None


def test_answers_only_without_comparison(tmp_path):
    MTBenchWriter(output_dir=str(tmp_path)).write_on_epoch_end(FakeTrainer(), None, PREDICTIONS, [])
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert rows[0] == {"question_id": 81, "category": "writing", "question": "Capital of France?",
                       "answer": "Paris."}
    assert not (tmp_path / "judge_prompts.jsonl").exists()


def test_judge_prompts_and_fake_judge(tmp_path, judge_server):
    url, seen = judge_server
    other = tmp_path / "baseline.jsonl"
    other.write_text("\n".join(json.dumps({"question_id": q, "answer": a})
                               for q, a in ((81, "Lyon."), (82, "5"))))
    writer = MTBenchWriter(output_dir=str(tmp_path / "out"), compare_with=str(other),
                           judge_url=url, timeout=5, allow_insecure_local=True)
    writer.write_on_epoch_end(FakeTrainer(), None, PREDICTIONS, [])
    out = Path(tmp_path / "out")
    prompts = [json.loads(x) for x in (out / "judge_prompts.jsonl").read_text().splitlines()]
    assert prompts[1]["prompt"] == JUDGE_TEMPLATE.format(query="2+2?", response1="4", response2="5")
    assert len(seen) == 2 and seen[0]["model"] == "gpt-4"
    summary = json.loads((out / "judge_scores.json").read_text())
    assert summary == {"judged": 1, "failed": 1, "assistant1_mean": 9.0, "assistant2_mean": 2.0,
                       "compare_with": str(other), "judge_model": "gpt-4"}
    reviews = [json.loads(x) for x in (out / "judge_reviews.jsonl").read_text().splitlines()]
    assert "error" in reviews[0] and reviews[1]["scores"] == [9.0, 2.0]


def test_unreachable_judge_is_recorded_not_raised(tmp_path):
    other = tmp_path / "b.jsonl"
    other.write_text(json.dumps({"question_id": 82, "answer": "5"}))
    writer = MTBenchWriter(output_dir=str(tmp_path), compare_with=str(other),
                           judge_url="http://127.0.0.1:9/v1/chat/completions", timeout=2,
                           max_retries=1, retry_wait=0, allow_insecure_local=True)
    writer.write_on_epoch_end(FakeTrainer(), None, PREDICTIONS, [])
    summary = json.loads((tmp_path / "judge_scores.json").read_text())
    assert summary["judged"] == 0 and summary["failed"] == 1


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_rouge_l_against_reference_answers_next_to_judge_scores(tmp_path, judge_server):
    url, _ = judge_server
    refs = tmp_path / "gpt-4.jsonl"  # FastChat's model-answer layout
    refs.write_text(json.dumps({"question_id": 81, "model_id": "gpt-4",
                                "choices": [{"index": 0, "turns": ["Paris.", "Madrid."]}]}))
    other = tmp_path / "baseline.jsonl"
    other.write_text("\n".join(json.dumps({"question_id": q, "answer": a})
                               for q, a in ((81, "It is Paris."), (82, "5"))))
    out = tmp_path / "out"
    writer = MTBenchWriter(output_dir=str(out), compare_with=str(other), judge_url=url,
                           timeout=5, references=str(refs), allow_insecure_local=True)
    writer.write_on_epoch_end(FakeTrainer(), None, PREDICTIONS, [])
    rouge = json.loads((out / "rouge_l.json").read_text())
    assert rouge["rouge_l"] == 1.0 and rouge["scored"] == 1  # "Paris." == the reference
    assert rouge["unscored_question_ids"] == [82]  # no reference for question 82
    assert rouge["compare_with_rouge_l"] == pytest.approx(0.5)  # P 1/3, R 1 vs "Paris."
    answers = _lines(out / "answers.jsonl")
    assert answers[0]["rouge_l"] == 1.0 and "rouge_l" not in answers[1]
    judged = json.loads((out / "judge_scores.json").read_text())
    assert judged["assistant1_mean"] == 9.0 and judged["assistant1_rouge_l"] == 1.0
    assert judged["assistant2_rouge_l"] == rouge["compare_with_rouge_l"]


def test_references_from_the_question_file_and_file_layouts(tmp_path):
    predictions = [[{**PREDICTIONS[0][0], "target": {**PREDICTIONS[0][0]["target"],
                                                     "text": "Paris is the capital."}},
                    {**PREDICTIONS[0][1], "target": {**PREDICTIONS[0][1]["target"], "text": ""}}]]
    MTBenchWriter(output_dir=str(tmp_path), references="question_file").write_on_epoch_end(
        FakeTrainer(), None, predictions, [])
    rouge = json.loads((tmp_path / "rouge_l.json").read_text())
    assert rouge["scored"] == 1 and rouge["unscored_question_ids"] == [82]
    assert rouge["rouge_l"] == pytest.approx(2 * (1 / 1) * (1 / 4) / (1 + 1 / 4))  # LCS "paris"
    layouts = tmp_path / "refs.jsonl"
    layouts.write_text("\n".join(json.dumps(r) for r in (
        {"question_id": 1, "answer": "a"}, {"question_id": 2, "reference": ["b", "c"]},
        {"question_id": 3, "choices": [{"turns": ["d"]}]})))
    assert read_reference_answers(layouts) == {1: "a", 2: "b", 3: "d"}
    layouts.write_text(json.dumps({"question_id": 1, "turns": ["q"]}))
    with pytest.raises(ValueError, match=r"refs.jsonl, line 1: no reference text"):
        read_reference_answers(layouts)
    with pytest.raises(FileNotFoundError, match="references file .* does not exist"):
        MTBenchWriter(references=str(tmp_path / "missing.jsonl"))
