"""The synth pipeline end to end on the tiny model: files and card, trainers loading the dataset, resume after
SIGKILL, refusal of another config's folder, bad input counted (prompt rows, a failing teacher, empty
responses), planted contamination dropped with a report, keep rules and pass bands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalgym.errors import EvalgymError
from evalgym.synth import SynthConfig, synthesize

FAST = {"decontam_envs": ["arithmetic", "gsm8k"], "lmeval_tasks": [], "max_tokens": 12}


def cfg(tiny_path: str, out: Path, **kw) -> SynthConfig:
    base = {"teacher": tiny_path, "envs": ["arithmetic"], "env_kwargs": {"arithmetic": {"ops": "+-"}}, "num_prompts": 12,
            "n": 4, "keep": "all", "out": str(out), "shard_prompts": 4, **FAST}
    return SynthConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_path):
    out = tmp_path_factory.mktemp("synth") / "ds"
    c = cfg(tiny_path, out, shapes=["sft", "dpo", "rl"], pairs="delta", weak_teacher=tiny_path, name="arith-test")
    return c, synthesize(c, progress=False)


def test_published_folder_card_and_exports(published):
    import datasets
    import pyarrow.parquet as pq

    from evalgym.synth.publish import content_hash

    c, summary = published
    out = Path(summary["out"])
    card = summary["card"]
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"sft", "dpo", "rl"} == set(card["rows"])
    for name, ds in dd.items():
        rows = ds.to_list()
        assert rows == pq.read_table(out / f"{name}.parquet").to_pylist()
        assert rows == [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == card["rows"][name] > 0
    assert card["content_hash"] == content_hash({k: ds.to_list() for k, ds in dd.items()})
    assert card["config"]["n"] == 4 and card["config"]["keep"] == "all" and "out" not in card["config"]
    assert card["teachers"][0]["weights_sha256"] and card["teachers"][0]["path"]
    assert card["verifiers"] == [{"verifier": "math", "version": "2", "samples": 48}]
    counts = card["counts"]
    assert counts["prompts from envs"] == 12 and counts["samples generated"] == 48
    assert counts["sft rows"] == len(dd["sft"]) and counts["prompts after decontamination"] == len(dd["rl"])
    assert card["contamination"]["checked"] and card["contamination"]["index"]["sources"]["env:evalgym/gsm8k-v0/test"] == 1319
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and card["content_hash"] in readme and "## Contamination" in readme
    assert json.loads((out / "meta.json").read_text())["content_hash"] == card["content_hash"]
    sft = dd["sft"][0]
    assert sft["messages"][-1]["role"] == "assistant" and sft["env_id"] == "evalgym/arithmetic-v1" and len(sft["hash"]) == 16
    dpo = dd["dpo"][0]
    assert dpo["kind"] == "delta" and dpo["chosen_reward"] >= dpo["rejected_reward"] and dpo["chosen"] != dpo["rejected"]
    # the same config again: done, nothing regenerated
    again = synthesize(c, progress=False)
    assert again["state"] == "done" and again["card"]["content_hash"] == card["content_hash"]


def test_trainers_load_the_dataset_and_list_its_problems(published, tmp_path, tiny_path):
    from evalgym.trainers.dpo import DPOConfig, train_dpo
    from evalgym.trainers.sft import SFTConfig, train_sft

    _, summary = published
    out = Path(summary["out"])
    res = train_sft(SFTConfig(model=tiny_path, data=str(out / "sft"), steps=2, batch_size=4, save_every=2,
                              run_dir=str(tmp_path / "sft")), progress=False)
    trained = json.loads((Path(res["checkpoint"].path) / "trained_problems.json").read_text())
    hashes = {json.loads(x)["hash"] for x in (out / "sft.jsonl").read_text().splitlines()}
    assert trained["count"] > 0 and set(trained["hashes"]) <= hashes and "evalgym/arithmetic-v1" in trained["by_env"]
    res = train_dpo(DPOConfig(model=tiny_path, data=str(out / "dpo.parquet"), steps=1, batch_size=2, save_every=1,
                              run_dir=str(tmp_path / "dpo")), progress=False)
    assert res["checkpoint"] is not None
    with pytest.raises(EvalgymError, match="splits"):
        train_sft(SFTConfig(model=tiny_path, data=str(out), steps=1, run_dir=str(tmp_path / "x")), progress=False)


def test_resume_after_sigkill_gives_what_an_uninterrupted_run_gives(tmp_path, tiny_path):
    args = ["synth", "--teacher", tiny_path, "--env", "arithmetic", "--num-prompts", "24", "--n", "4",
            "--keep", "all", "--shard-prompts", "3", "--max-tokens", "32", "--no-decontam", "--quiet", "--json"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "evalgym.cli", *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (killed / "work" / "gen-00001.jsonl").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (killed / "work").glob("gen-*.jsonl"))
    assert 2 <= len(done) < 8 and not (killed / "meta.json").exists()
    from evalgym.cli import main

    assert main([*args, "--out", str(killed)]) == 0
    assert not list((killed / "work").glob(".gen-*"))      # the killed shard's temp file is cleaned up
    resumed = json.loads((killed / "synth.json").read_text())
    assert resumed["generation"]["shards_resumed"] == len(done) and resumed["generation"]["shards"] == 8
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    assert json.loads((whole / "synth.json").read_text())["content_hash"] == resumed["content_hash"]


def test_a_folder_of_another_config_is_refused_unless_overwrite(published, tmp_path, tiny_path):
    c, summary = published
    with pytest.raises(EvalgymError, match=r"another config \(differs in: n\)"):
        synthesize(c.model_copy(update={"n": 2}), progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(EvalgymError, match="not an evalgym synth folder"):
        synthesize(cfg(tiny_path, other, num_prompts=2), progress=False)
    res = synthesize(cfg(tiny_path, other, num_prompts=2, overwrite=True, decontam=False), progress=False)
    assert res["state"] == "new" and not (other / "notes.txt").exists() and (other / "meta.json").exists()


def test_split_eval_is_refused_naming_the_field(tmp_path, tiny_path):
    with pytest.raises(EvalgymError, match="split: 'eval' is evalgym/arithmetic-v1's evaluation split"):
        synthesize(cfg(tiny_path, tmp_path / "e", split="eval"), progress=False)
    with pytest.raises(EvalgymError, match="split: 'test' is evalgym/gsm8k-v0's evaluation split"):
        synthesize(cfg(tiny_path, tmp_path / "g", envs=["gsm8k"], split="test"), progress=False)


def test_bad_rows_a_failing_teacher_and_empty_responses_are_counted(tmp_path, tiny_path, data_dir):
    rows = [{"prompt": "What is 2 + 3?", "answer": "5", "env": "gsm8k"},
            {"prompt": "x" * 3000, "answer": "1", "env": "gsm8k"},           # longer than the tiny model's context
            {"answer": "7"},                                                  # no prompt
            {"prompt": 5},                                                    # wrong type
            {"prompt": "Hi", "env": "no-such-env"},
            {"prompt": [{"role": "user", "content": "Name a color."}], "domain": "chat"}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = synthesize(SynthConfig(teacher=tiny_path, prompts=str(path), n=2, keep="all", shard_prompts=1,
                                 out=str(tmp_path / "o"), **FAST), progress=False)
    card = res["card"]
    bad = card["failures"]["bad_prompt_rows"]
    assert bad["count"] == 3 and [e["where"].rsplit(":", 1)[1] for e in bad["examples"]] == ["3", "4", "5"]
    assert "no-such-env" in bad["examples"][2]["error"]
    assert card["failures"]["teacher_failed_prompts"] == 1
    assert "max_position_embeddings" in card["failures"]["examples"]["failed"][0]["error"]
    assert card["counts"]["prompts answered"] == 2 and card["rows"]["sft"] > 0
    # the unverifiable chat prompt is kept by keep: all, marked unverified
    sft = [json.loads(x) for x in (Path(res["out"]) / "sft.jsonl").read_text().splitlines()]
    assert {r["verified"] for r in sft} == {"verifier", "none"}
    # a teacher whose every response is empty (every character stops it): counted, nothing kept
    res = synthesize(cfg(tiny_path, tmp_path / "empty", num_prompts=4, stop=[chr(c) for c in range(32, 127)] + ["\n"]),
                     progress=False)
    gen = res["card"]["generation"]
    assert gen["empty"] == gen["samples"] == 16 and res["card"]["rows"] == {} and gen["examples"]["empty"]


def test_a_teacher_backend_that_fails_fails_its_prompts_and_the_run_goes_on(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = SynthConfig(teacher="gone", teacher_backend="openai", envs=["arithmetic"], num_prompts=3, n=2,
                    teacher_kwargs={"base_url": f"http://127.0.0.1:{port}/v1", "served_model": "gone", "mode": "chat",
                                    "timeout_s": 2},
                    out=str(tmp_path / "o"), **FAST)
    card = synthesize(c, progress=False)["card"]
    assert card["failures"]["teacher_failed_prompts"] == 3 and card["rows"] == {}
    assert "cannot reach" in card["failures"]["examples"]["failed"][0]["error"]
    assert "no rows" in card["warnings"][0]


def test_planted_eval_problems_are_dropped_and_reported(tmp_path, tiny_path, data_dir):
    from evalgym.data import load_rows

    test = load_rows("gsm8k/test.jsonl", data_dir_=str(data_dir))
    train = load_rows("gsm8k/train.jsonl", data_dir_=str(data_dir))
    planted = [{"prompt": "  " + test[i]["question"].upper().replace("  ", " "), "answer": "1", "env": "gsm8k"}
               for i in (3, 99, 500)]
    clean = [{"prompt": train[i]["question"], "answer": "1", "env": "gsm8k"} for i in (1, 2, 3, 4)]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in planted + clean) + "\n")
    res = synthesize(SynthConfig(teacher=tiny_path, prompts=str(path), n=1, keep="all", out=str(tmp_path / "o"),
                                 **FAST), progress=False)
    contamination = res["card"]["contamination"]
    assert contamination["dropped"] == 3 and contamination["by_source"] == {"env:evalgym/gsm8k-v0/test": 3}
    report = json.loads((Path(res["out"]) / "report.json").read_text())
    assert sorted(h["problem"] for h in report["contamination"]) == ["prompts/1", "prompts/2", "prompts/3"]
    assert res["card"]["rows"]["sft"] == 4
    # decontamination off keeps them (the feature changes the outcome)
    off = synthesize(SynthConfig(teacher=tiny_path, prompts=str(path), n=1, keep="all", out=str(tmp_path / "off"),
                                 decontam=False, **FAST), progress=False)
    assert off["card"]["rows"]["sft"] == 7 and off["card"]["contamination"] == {"checked": False}


def test_push_to_hub_without_a_hub_leaves_the_dataset_on_disk(tmp_path, tiny_path):
    c = cfg(tiny_path, tmp_path / "o", num_prompts=2, decontam=False, push_to_hub="someone/synth-test")
    with pytest.raises(EvalgymError, match="push_to_hub someone/synth-test.*complete on disk"):
        synthesize(c, progress=False)
    assert (tmp_path / "o" / "meta.json").is_file() and (tmp_path / "o" / "sft.parquet").is_file()


def test_an_rl_prompt_set_reads_back_as_prompts(published, tmp_path, tiny_path):
    _, summary = published
    rl = Path(summary["out"]) / "rl.jsonl"
    res = synthesize(SynthConfig(teacher=tiny_path, prompts=str(rl), n=2, keep="all", out=str(tmp_path / "again"), **FAST),
                     progress=False)
    card = res["card"]
    assert card["counts"]["prompts from file"] == len(rl.read_text().splitlines())
    assert card["counts"].get("bad prompt rows") == 0 and card["verifiers"][0]["verifier"] == "math"
    rows = [json.loads(x) for x in (Path(res["out"]) / "sft.jsonl").read_text().splitlines()]
    original = {json.loads(x)["hash"] for x in rl.read_text().splitlines()}
    assert {r["hash"] for r in rows} <= original          # the same problems: the same content hashes


def test_a_judge_grades_prompts_without_a_checker_and_its_failures_are_on_the_card(tmp_path, tiny_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"Write a haiku about the number {i}."}) for i in range(3)) + "\n")
    res = synthesize(SynthConfig(teacher=tiny_path, prompts=str(path), n=2, judge=tiny_path, keep="correct",
                                 out=str(tmp_path / "j"), **FAST), progress=False)
    card = res["card"]
    judge = card["failures"]["judge"]
    assert judge["judged"] == 6 and judge["unparseable"] + judge["scored"] == 6 and card["judge"]["model"] == tiny_path
    assert card["verifiers"] == [] or card["verifiers"][0]["verifier"] == "judge"
    # the noise judge scores nothing: nothing is kept as correct, and the card says why
    assert judge["unparseable"] == 6 and card["rows"] == {}
    assert card["failures"]["selection"]["samples_dropped"] == {"grader error": 6}


def test_cli_errors_name_the_field(tmp_path, capsys):
    from evalgym.cli import main

    assert main(["synth", "--teacher", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "give envs (prompts from env splits) or prompts" in capsys.readouterr().err
    assert main(["synth", "--teacher", "tiny", "--env", "arithmetic", "--out", str(tmp_path / "x"), "--pass-band", "9"]) == 2
    assert "pass_band [9, 9]: more passes than n=4 samples" in capsys.readouterr().err
    assert main(["synth", "--teacher", "tiny", "--env", "arithmetic", "--out", str(tmp_path / "x"), "propose.agreement=2"]) == 2
    assert "propose.agreement: Input should be less than or equal to 1" in capsys.readouterr().err
    assert main(["synth", "--teacher", "a", "--teacher", "b", "--env", "arithmetic", "--out", str(tmp_path / "x")]) == 2
    assert "two default teachers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
