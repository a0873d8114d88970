"""`specdsl grid` under hostile input: flags, environment, data against the network, grid size, damaged state
files and run checkpoints, NaN results. Each is one `error:` line, exit 2, nothing written or changed, or a
correct continuation with the same answer; never a traceback, never a different winner."""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

from specdsl.grid import halving, store
from specdsl.grid.halving import Score
from tests.conftest import listing, one_error_line, run_main

from .conftest import GRID_FLAGS, GRID_SPEC, PROXY_FLAGS

FLAGS = (*GRID_FLAGS, *PROXY_FLAGS)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "grid_test.spec"
    path.write_text(GRID_SPEC)
    return path


@pytest.fixture(scope="module")
def finished(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny search (two networks, two rungs), made once."""
    out = tmp_path_factory.mktemp("finished") / "out"
    code, _, err = run_main("grid", str(spec), "-o", str(out), *FLAGS)
    assert code == 0, err
    return out


def answer(out: Path) -> tuple[str, dict[str, float], list[tuple[int, int, str, str]]]:
    """What a search decided: the winner's network and constants, and every (candidate, rung) outcome."""
    summary = json.loads((out / "summary.json").read_text())
    best = {key: summary["best"][key] for key in ("alpha", "beta", "gamma")}
    outcomes = set()
    for path in out.glob("results*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            outcomes.add((record["candidate"], record["rung"], repr(record["accuracy"]), repr(record["loss"])))
    return summary["best"]["network"], best, sorted(outcomes)


PROGRESS = re.compile(r"\d+ grid points, |rung \d+/\d+: |  n\d{3} \(|  waiting for ")  # the search's log lines


def refused(code: int, err: str, out: Path, before: dict[str, bytes]) -> str:
    """Exit 2, one error line (after the search's progress lines), every file as it was."""
    assert code == 2, err
    line = one_error_line("".join(line for line in err.splitlines(True) if not PROGRESS.match(line)))
    assert listing(out) == before
    return line


# ---- flags, environment, grid size, data: refused before anything is written --------------------------------


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (("--jobs", "0"), "--jobs: error: expected a whole number 1..1024, got 0"),
        (("--jobs", "-1"), "--jobs: error: expected a whole number 1..1024, got -1"),
        (("--threads", "0"), "--threads: error: expected a whole number 1..1024, got 0"),
        (("--shard", "1/1"), "--shard 1/1: error: expected I/N with 0 <= I < N"),
        (("--shard=-1/2",), "--shard -1/2: error: expected I/N with 0 <= I < N"),
        (("--shard", "0/"), "--shard 0/: error: expected I/N with 0 <= I < N"),
        (("--shard", "1/99999999999999"), "--shard 1/99999999999999: error: expected I/N"),
        (("--tolerance", "-0.1"), "--tolerance -0.1: error: must be >= 0, got -0.1"),
        (("--tolerance", "nan"), "--tolerance: error: expected a finite number, got nan"),
        (("--budget", "0"), "--budget 0: error: must be positive, got 0"),
        (("--budget", "-2"), "--budget -2: error: must be positive, got -2"),
        (("--budget", "inf"), "--budget: error: expected a finite number, got inf"),
        (("--epochs", "0"), "--epochs: error: expected a whole number 1..100000, got 0"),
        (("--top", "0"), "--top: error: expected a whole number 1..100000, got 0"),
        (("--train-images", "0"), "--train-images: error: expected a whole number 1..1000000000, got 0"),
        (("--seed", "1" * 70), "--seed: error: expected a whole number 0..4294967295, got 1111"),
        (("--alpha", "1:2:0"), "--alpha 1:2:0: error: step must be positive, got 0"),
        (("--alpha", "1:2:-0.1"), "--alpha 1:2:-0.1: error: step must be positive, got -0.1"),
        (("--alpha", "2:1:0.1"), "--alpha 2:1:0.1: error: start 2 is above stop 1"),
        (("--alpha", "1:1e308:1e-308"), "--alpha 1:1e308:1e-308: error: over 10^15 values on one axis"),
        (("--beta", "1,,2"), "--beta 1,,2: error: expected START:STOP:STEP, a comma-separated list or one number"),
        (("--gamma", "nan"), "--gamma nan: error: values must lie in (0, 64], got nan"),
        (("--set", "epochs=3"), "--set epochs: error: the proxy schedule's length is --epochs, not a training key"),
        (("--data", "builtin:nope"), "builtin:nope: error: unknown built-in data set"),
    ],
)
def test_bad_flags_are_one_line_before_anything_is_written(
    spec: Path, tmp_path: Path, flags: tuple[str, ...], error: str
) -> None:
    code, out, err = run_main("grid", str(spec), "-o", str(tmp_path / "out"), *FLAGS, *flags)
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(error), err
    assert not (tmp_path / "out").exists()


def test_a_huge_grid_is_counted_and_refused_in_under_a_second(spec: Path, tmp_path: Path) -> None:
    axis = "1:1.999:0.001"
    started = time.perf_counter()
    code, _, err = run_main("grid", str(spec), "-o", str(tmp_path / "out"), "--alpha", axis, "--beta", axis,
                            "--gamma", axis)  # fmt: skip
    assert time.perf_counter() - started < 1.0
    assert code == 2 and not (tmp_path / "out").exists()
    assert one_error_line(err) == (
        "--alpha/--beta/--gamma: error: the grid has 1,000,000,000 points (1000 alpha x 1000 beta x 1000 gamma); "
        "at most 10,000"
    )


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        ("RANK", "abc", "environment variable RANK: error: expected a whole number >= 0, got 'abc'"),
        ("LOCAL_WORLD_SIZE", "0", "environment variable LOCAL_WORLD_SIZE: error: expected a whole number >= 1"),
        ("WORLD_SIZE", "abc", "environment variable WORLD_SIZE: error: expected a whole number >= 1, got 'abc'"),
        ("LOCAL_RANK", "-1", "environment variable LOCAL_RANK: error: expected a whole number >= 0"),
    ],
)
def test_a_bad_torchrun_variable_is_one_line_naming_it(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, error: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run_main("grid", str(spec), "-o", str(tmp_path / "out"), *FLAGS)
    assert code == 2 and one_error_line(err).startswith(error), err
    assert not (tmp_path / "out").exists()
    # The worker's slot count reads the same validated environment (as the API reaches it, without the CLI).
    from specdsl.errors import SpecError
    from specdsl.grid.worker import local_slots

    with pytest.raises(SpecError, match=variable):
        local_slots(None, environ={variable: value})


def test_data_that_does_not_fit_the_network_is_refused_before_grid_json(tmp_path: Path) -> None:
    """b0 has 1000 outputs, digits 10 classes: refused before any state, so the fixed rerun is not blocked."""
    out = tmp_path / "out"
    flags = ("--alpha", "1", "--beta", "1", "--gamma", "1", "--budget", "1")
    code, _, err = run_main("grid", "b0", "-o", str(out), *flags)
    assert code == 2
    assert one_error_line(err) == (
        "--data builtin:digits: error: builtin:digits has 10 classes but the network has 1000 outputs"
    )
    assert "hint: give the base spec head { classes = 10 }" in err
    assert not out.exists()
    from PIL import Image

    folder = tmp_path / "images"  # an ImageFolder with 2 classes against the 10-class test network
    for split, label in (("train", "a"), ("train", "b"), ("val", "a")):
        (folder / split / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / split / label / "x.png")
    spec = tmp_path / "grid_test.spec"
    spec.write_text(GRID_SPEC)
    code, _, err = run_main("grid", str(spec), "-o", str(out), "--data", str(folder), *FLAGS)
    assert code == 2 and "has 2 classes but the network has 10 outputs" in one_error_line(err)
    assert not out.exists()


def test_an_output_path_that_is_a_file_is_refused(spec: Path, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("mine")
    code, _, err = run_main("grid", str(spec), "-o", str(tmp_path / "out"), *FLAGS)
    assert code == 2
    assert one_error_line(err) == f"{tmp_path / 'out'}: error: exists and is not a directory: choose another -o"
    assert (tmp_path / "out").read_text() == "mine"


# ---- the ranking ---------------------------------------------------------------------------------------------


def test_nan_inf_and_out_of_range_scores_never_rank_first() -> None:
    nan, inf = math.nan, math.inf
    scores = [Score(0, nan, 0.1), Score(1, 0.5, 1.0), Score(2, inf, 0.5), Score(3, 0.4, nan), Score(4, 1.5, 0.1),
              Score(5, 0.5, -inf), Score(6, 0.6, 2.0)]  # fmt: skip
    assert halving.ranking(scores) == [6, 1, 0, 2, 3, 4, 5]
    assert halving.ranking(reversed(scores)) == [6, 1, 0, 2, 3, 4, 5]  # the order given does not matter
    assert [halving.valid(s) for s in scores] == [False, True, False, False, False, False, True]


def test_ties_within_the_documented_precision_go_to_grid_order() -> None:
    """docs/grid.md's old winner was decided by 0.12267 against 0.12288: within 2 significant digits, a tie."""
    assert halving.ranking([Score(6, 1.0, 0.12267), Score(5, 1.0, 0.12288)]) == [5, 6]
    assert halving.ranking([Score(5, 1.0, 0.12288), Score(6, 1.0, 0.12267)]) == [5, 6]
    assert halving.ranking([Score(5, 1.0, 0.13), Score(6, 1.0, 0.12)]) == [6, 5]  # a real difference still counts
    assert halving.ranking([Score(5, 0.99722, 0.1), Score(6, 1.0, 0.5)]) == [6, 5]  # one image of 360 counts
    assert halving.ranking([Score(5, 0.70001, 0.1), Score(6, 0.70004, 0.1)]) == [5, 6]  # float noise does not


def _rewrite(out: Path, change: Callable[[dict], dict | None]) -> None:
    """Rewrite a search's results.jsonl as a search would have written it (valid digests): ``change`` returns the
    record's fields (None drops it)."""
    _write_results(out, lambda records: (change(record) for record in records))


def _write_results(out: Path, change: Callable[[list[dict]], Iterable[dict | None]]) -> None:
    """Replace a search's results.jsonl by the records ``change`` makes of its records' fields (valid digests)."""
    saved = store.GridConfig.model_validate_json((out / store.CONFIG_FILE).read_text())
    grid = store.GridStore(out, saved.model_dump(exclude={"format", "digest"}))
    records = [record.model_dump(exclude={"digest"}) for record in grid.results().values()]
    (out / store.RESULTS_FILE).unlink()
    for fields in change(records):
        if fields is not None:
            grid.append((0, 1), grid.record(fields))


def every_run_diverged(records: list[dict]) -> list[dict]:
    """Every network diverged (infinite loss) at every rung: each network's result at each rung the log has, so the
    search has nothing to train whichever network it promotes (among diverged ones, grid order decides)."""
    first = {record["candidate"]: record for record in records if record["rung"] == 0}
    epochs = {record["rung"]: record["epochs"] for record in records}
    return [
        {**first[candidate], "rung": rung, "epochs": epochs[rung], "loss": math.inf}
        for candidate in sorted(first)
        for rung in sorted(epochs)
    ]


def test_a_nan_result_is_never_the_answer(spec: Path, finished: Path, tmp_path: Path) -> None:
    """The first rung's best network diverged (NaN): the other network is promoted, trained and chosen."""
    winner, _, _ = answer(finished)
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    loser = 1 - int(winner[1:])

    def diverged(record: dict) -> dict | None:
        if record["candidate"] != loser and record["rung"] == 1:
            return None
        return {**record, "accuracy": math.nan} if record["candidate"] != loser else record

    _rewrite(copy, diverged)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    assert code == 0, err
    assert answer(copy)[0] == f"n{loser:03d}"

    _write_results(copy, every_run_diverged)
    before = listing(copy)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    line = refused(code, err, copy, before)
    assert line == f"{copy}: error: no network reached a finite held-out accuracy and loss (every proxy run diverged)"

    # Every network diverged in the first rung and no later rung is recorded: the search stops there, training
    # no diverged network longer (nothing is written).
    _write_results(copy, lambda records: (r for r in every_run_diverged(records) if r["rung"] == 0))
    before = listing(copy)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    assert refused(code, err, copy, before) == line


# ---- damaged state ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "damage", "error"),
    [
        ("grid.json", lambda b: b[: len(b) // 2], "grid.json: error: damaged grid state: not JSON"),
        ("grid.json", lambda b: b"[]", "grid.json: error: damaged grid state: not a specdsl grid configuration"),
        ("grid.json", lambda b: b.replace(b'"seed": 0', b'"seed": 1'), "grid.json: error: damaged grid state: its "
         "content does not match its digest"),
        ("grid.json", lambda b: b"\xff\xfe" + b, "grid.json: error: damaged grid state: not JSON"),
        ("grid.json", lambda b: re.sub(rb'  "format": "[^"]*",\n', b"", b), "grid.json: error: damaged grid state: no "
         "format: not a search this specdsl can continue (it writes specdsl-grid/2)"),
        ("results.jsonl", lambda b: b.replace(b'"rung":0', b'"rung":"0"', 1), "results.jsonl:1: error: damaged grid "
         "state: not a grid result (rung: Input should be a valid integer)"),
        ("results.jsonl", lambda b: re.sub(rb'"accuracy":0\.(\d)', rb'"accuracy":0.9', b, count=1),
         "results.jsonl:1: error: damaged grid state: the record does not match its digest"),
        ("results.jsonl", lambda b: b"\n" + b, "results.jsonl:1: error: damaged grid state: not a JSON record"),
    ],
)  # fmt: skip
def test_a_damaged_state_file_is_one_located_line(
    spec: Path, finished: Path, tmp_path: Path, name: str, damage: Callable[[bytes], bytes], error: str
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    (copy / name).write_bytes(damage((copy / name).read_bytes()))
    before = listing(copy)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    line = refused(code, err, copy, before)
    assert line.startswith(f"{copy}/{error}"), line
    assert f"hint: to start the search afresh, remove {copy} (or choose another -o)" in err


def test_shard_logs_are_validated_like_the_main_log(spec: Path, finished: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    log = (copy / "results.jsonl").read_bytes()
    (copy / "results.shard-1-of-2.jsonl").write_bytes(log)  # the same records again: merged, the same answer
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    assert code == 0, err
    assert answer(copy) == answer(finished)
    (copy / "results.shard-1-of-2.jsonl").write_bytes(log.replace(b'"params":', b'"params":1', 1))
    before = listing(copy)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    line = refused(code, err, copy, before)
    assert line.startswith(f"{copy}/results.shard-1-of-2.jsonl:1: error: damaged grid state: the record does not")


def test_a_damaged_proxy_checkpoint_is_one_line_naming_the_run(spec: Path, finished: Path, tmp_path: Path) -> None:
    """The winner's last result is lost, so its run must resume, and its checkpoint is damaged: the trainer's
    diagnostic, with how to retrain that one network (the search never deletes a run by itself)."""
    winner, _, _ = answer(finished)
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    _rewrite(copy, lambda record: None if record["rung"] == 1 else record)
    state = copy / "runs" / winner / "checkpoint" / "state.json"
    state.write_bytes(state.read_bytes()[:20])
    before = listing(copy)
    code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
    line = refused(code, err, copy, before)
    assert line.startswith(f"{state}: error: "), line
    assert "--force" not in line  # the trainer's advice for `specdsl train`, not for a grid
    assert f"hint: to train network {winner} afresh, remove {copy / 'runs' / winner} and rerun" in err


# ---- property: any damage to any state file -------------------------------------------------------------------

STATE_FILES = (  # {winner}: the winning network's run, {other}: the other network's (which wins depends on the init)
    "grid.json",
    "results.jsonl",
    "runs/{other}/checkpoint/state.json",
    *(f"runs/{{winner}}/checkpoint/{name}" for name in ("state.json", "state.safetensors", "weights.safetensors")),
    "runs/{winner}/checkpoint/ema.safetensors",
    "runs/{winner}/metrics.jsonl",
    "runs/{winner}/spec.spec",
)


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, str, int, int, bool]:
    """(file, how, a position in it, a byte or a file to copy from, whether the last rung's result is lost too:
    a crash after the checkpoint but before the log, so the winner's run must resume from its checkpoint)."""
    return (
        draw(st.sampled_from(STATE_FILES)),
        draw(st.sampled_from(["truncate", "replace", "flip", "number"])),
        draw(st.integers(0, 10**6)),
        draw(st.integers(0, 255)),
        draw(st.booleans()),
    )


def damage_file(path: Path, how: str, position: int, value: int, others: list[Path]) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: position % (len(data) + 1)])
    elif how == "replace":
        path.write_bytes(others[value % len(others)].read_bytes())
    elif how == "flip":
        index = position % len(data)
        path.write_bytes(data[:index] + bytes([data[index] ^ (value or 1)]) + data[index + 1 :])
    else:
        digits = [match.start() for match in re.finditer(rb"[0-9]", data)]
        index = digits[position % len(digits)]
        new = b"0123456789".replace(data[index : index + 1], b"")[value % 9 : value % 9 + 1]
        path.write_bytes(data[:index] + new + data[index + 1 :])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damages())
def test_any_damage_to_a_finished_grid_is_an_error_or_the_same_answer(
    spec: Path, finished: Path, damage: tuple[str, str, int, int, bool]
) -> None:
    name, how, position, value, lost = damage
    expected = answer(finished)
    winner = expected[0]
    assert winner in ("n000", "n001")  # the winner, whose run STATE_FILES damages
    name = name.format(winner=winner, other="n001" if winner == "n000" else "n000")
    assert (finished / name).is_file()
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "out"
        shutil.copytree(finished, copy)
        if lost:
            _rewrite(copy, lambda record: None if record["rung"] == 1 else record)
        others = sorted(path for path in copy.rglob("*") if path.is_file() and path.name != Path(name).name)
        damage_file(copy / name, how, position, value, others)
        before = listing(copy)
        code, _, err = run_main("grid", str(spec), "-o", str(copy), *FLAGS)
        if code == 0:
            assert "Traceback" not in err
            assert answer(copy) == expected  # a correct continuation: the same winner and numbers
        else:
            line = refused(code, err, copy, before)
            assert line.startswith(str(copy)), line  # located: a file of the search (or the search itself)
