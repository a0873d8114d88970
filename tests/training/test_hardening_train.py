"""``specdsl train`` under the error contract: every bad flag, run directory and state file is one located
line, exit 2, no traceback, before any work; writes are atomic; ``--force`` touches only the trainer's files;
a damaged run never resumes to a different result (the property test damages every state file)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

from tests.conftest import SPECS, listing, one_error_line, run_main  # noqa: E402

from .conftest import TRAIN_SPEC  # noqa: E402

#: Two one-epoch stages at 8 and 16 px: a whole run takes seconds.
SPEC = TRAIN_SPEC.replace("epochs = 6", "epochs = 2").replace("progressive_stages = 3", "progressive_stages = 2")
STATE_FILES = (
    "spec.spec",
    "metrics.jsonl",
    "best.json",
    "best.safetensors",
    "checkpoint/state.json",
    "checkpoint/state.safetensors",
    "checkpoint/weights.safetensors",
    "checkpoint/ema.safetensors",
    "checkpoint/best.json",
    "checkpoint/best.safetensors",
)
TIMINGS = ("train_seconds", "images_per_second")


def train(spec: Path, run_dir: Path, *flags: str) -> tuple[int, str, str]:
    return run_main("train", str(spec), "-o", str(run_dir), "--threads", "1", "-q", *flags)


def outcome(run_dir: Path) -> dict[str, object]:
    """What a run produced, timings left out: equal outcomes are the same training."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    found: dict[str, object] = {"metrics": [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]}
    for name in STATE_FILES[2:]:
        if name != "checkpoint/state.json":
            found[name] = (run_dir / name).read_bytes()
    state = json.loads((run_dir / "checkpoint/state.json").read_text())
    found["progress"] = state["progress"]
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run stopped after epoch 1 of 2, and its resumed (finished) copy."""
    root = tmp_path_factory.mktemp("hardening")
    spec = root / "tiny.spec"
    spec.write_text(SPEC)
    stopped = root / "stopped"
    code, _, err = train(spec, stopped, "--stop-at-epoch", "1")
    assert code == 0, err
    finished = root / "finished"
    shutil.copytree(stopped, finished, symlinks=True)
    code, out, err = train(spec, finished, "--resume")
    assert code == 0, err
    assert out.startswith("trained 1 epochs (2 of 2)")
    return {"spec": spec, "stopped": stopped, "finished": finished}


def copy_of(run: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target, symlinks=True)
    return target


def refused(args: list[str], cwd: Path, flag: str) -> str:
    before = listing(cwd)
    code, _, err = run_main(*args)
    assert code == 2, err
    line = one_error_line(err)
    assert flag in line.split("error:")[0], line
    assert listing(cwd) == before
    return line


# ------------------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("flags", "blamed", "says"),
    [
        (["--workers", "-1"], "--workers", "0..1024"),
        (["--threads", "0"], "--threads", "1..1024"),
        (["--threads", "-1"], "--threads", "got -1"),
        (["--eval-every", "0"], "--eval-every", "got 0"),
        (["--device", "foo"], "--device", "'foo'"),
        (["--device", "meta"], "--device", "'meta'"),
        (["--device", "cuda:99"], "--device", "'cuda:99' is not here"),
        (["--compile-backend", "bogus"], "--compile-backend", "unknown torch.compile backend 'bogus'"),
        (["--seed", "9" * 70], "--seed", "0..4294967295"),
        (["--seed", "-1"], "--seed", "got -1"),
        (["--set", "epochs=3 lr=0.1"], "--set", "one KEY=VALUE"),
        (["--set", "epochs=3 } stem { channels = 8"], "--set", "one KEY=VALUE"),
        (["--stop-at-epoch", "0"], "--stop-at-epoch", "got 0"),
        (["--epochs", "2"], "--epochs", "2 epochs cannot make 3 progressive stages"),
        (["--set", "epochs=2"], "--set epochs=2", "2 epochs cannot make 3 progressive stages"),
        (["--lr", "-1"], "--lr", "training.lr"),
    ],
)
def test_a_bad_flag_is_one_line_before_any_work(tmp_path: Path, flags: list[str], blamed: str, says: str) -> None:
    if flags[1] == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    (tmp_path / "keep.txt").write_text("mine\n")
    args = ["train", str(SPECS / "digits_tiny.spec"), "-o", str(tmp_path / "run"), *flags]
    line = refused(args, tmp_path, blamed)
    assert says in line
    assert not (tmp_path / "run").exists()


def test_stopping_at_an_epoch_resumed_past_or_finished_has_nothing_left(runs: dict[str, Path], tmp_path: Path) -> None:
    for name, done in (("stopped", "1 of 2"), ("finished", "2 of 2")):
        run = copy_of(runs[name], tmp_path, name)
        before = listing(run)
        code, out, err = train(runs["spec"], run, "--resume", "--stop-at-epoch", "1")
        assert code == 0 and "error" not in err and "Traceback" not in err, err
        assert out.startswith(f"nothing left to train: {run} has {done} epochs; best ")
        assert "-100" not in out and listing(run) == before
    code, out, _ = train(runs["spec"], copy_of(runs["finished"], tmp_path, "again"), "--resume")
    assert code == 0 and out.startswith("nothing left to train") and "trained" not in out


def test_a_run_without_evaluation_reports_no_best_and_names_only_what_it_wrote(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.spec"
    spec.write_text(SPEC)
    code, out, err = train(spec, tmp_path / "run", "--stop-at-epoch", "1", "--eval-every", "2")
    assert code == 0, err
    assert "best held-out accuracy none (not evaluated yet)" in out and "-100" not in out
    assert "best.safetensors" not in err and not (tmp_path / "run/best.safetensors").exists()


# ---------------------------------------------------------------------------------------- disk and --force


def test_a_failing_checkpoint_write_is_one_line_and_leaves_the_last_checkpoint(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from specdsl.training import checkpoint

    run = copy_of(runs["stopped"], tmp_path)
    before = listing(run / "checkpoint")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", full)
    code, _, err = train(runs["spec"], run, "--resume")
    assert code == 2
    assert one_error_line(err) == f"error: cannot write {run}/checkpoint: No space left on device"
    assert listing(run / "checkpoint") == before
    assert not [path.name for path in run.iterdir() if path.name.startswith(".")]  # no staging, no .partial
    monkeypatch.undo()
    code, _, err = train(runs["spec"], run, "--resume")  # the epoch is trained again, to the same result
    assert code == 0, err
    assert outcome(run) == outcome(runs["finished"])


def test_a_full_disk_is_one_line(runs: dict[str, Path], full_disk: Path) -> None:
    before = listing(full_disk)
    code, _, err = train(runs["spec"], full_disk / "run")
    assert code == 2
    assert one_error_line(err).startswith(f"error: cannot write {full_disk}/run/")
    assert "No space left on device" in err
    assert {name: data for name, data in listing(full_disk).items() if not name.startswith("run/")} == before
    assert not [p for p in (full_disk / "run").rglob("*") if p.name.startswith(".") or p.suffix == ".partial"]


@pytest.mark.parametrize("where", ["read-only", "under a file"])
def test_an_unwritable_run_directory_is_one_line(runs: dict[str, Path], read_only_dir: Path, where: str) -> None:
    before = listing(read_only_dir)
    run = read_only_dir / "run" if where == "read-only" else read_only_dir / "keep.txt" / "run"
    code, _, err = train(runs["spec"], run)
    assert code == 2
    assert one_error_line(err).startswith(f"error: cannot write {run if where == 'read-only' else run.parent}")
    assert listing(read_only_dir) == before


def test_force_replaces_only_the_trainers_files_and_never_follows_a_link(runs: dict[str, Path], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.spec").write_text("my spec\n")
    (outside / "ckpt").mkdir()
    (outside / "ckpt" / "state.json").write_text("my state\n")
    run = copy_of(runs["stopped"], tmp_path)
    (run / "notes.txt").write_text("mine\n")
    (run / "spec.spec").unlink()
    (run / "spec.spec").symlink_to(outside / "precious.spec")
    (run / "checkpoint" / "mine.txt").write_text("mine too\n")
    before_outside = listing(outside)
    before = listing(run)
    line = refused(["train", str(runs["spec"]), "-o", str(run), "--force"], run, f"{run}/checkpoint")
    assert "'mine.txt'" in line and "move it out" in line
    assert listing(run) == before
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint").symlink_to(outside / "ckpt", target_is_directory=True)
    code, _, err = train(runs["spec"], run, "--force", "--stop-at-epoch", "1")
    assert code == 0, err
    assert listing(outside) == before_outside  # link targets untouched
    assert (run / "notes.txt").read_text() == "mine\n"
    assert not (run / "spec.spec").is_symlink() and not (run / "checkpoint").is_symlink()
    assert outcome(run) == outcome(runs["stopped"])


# ------------------------------------------------------------------------------------------- damaged state

DAMAGES = {
    "truncated state.json": ("checkpoint/state.json", lambda data: data[: len(data) // 2]),
    "wrong-shaped state.json": ("checkpoint/state.json", lambda data: b'{"format": "specdsl-train-checkpoint/1"}'),
    "state.json a list": ("checkpoint/state.json", lambda data: b"[1, 2, 3]\n"),
    "epoch -5": ("checkpoint/state.json", lambda data: data.replace(b'"epoch": 1,', b'"epoch": -5,', 1)),
    "epoch 1000 of 2": ("checkpoint/state.json", lambda data: data.replace(b'"epoch": 1,', b'"epoch": 1000,', 1)),
    "truncated state.safetensors": ("checkpoint/state.safetensors", lambda data: data[:1000]),
    "empty state.safetensors": ("checkpoint/state.safetensors", lambda data: b""),
    "pickled state.safetensors": ("checkpoint/state.safetensors", lambda data: b"\x80\x04\x95" + data[:64]),
    "foreign state.safetensors": ("checkpoint/state.safetensors", None),  # the weights' bytes
    "truncated weights": ("checkpoint/weights.safetensors", lambda data: data[: len(data) - 7]),
    "empty weights": ("checkpoint/weights.safetensors", lambda data: b""),
    "foreign weights": ("checkpoint/weights.safetensors", None),
    "truncated ema": ("checkpoint/ema.safetensors", lambda data: data[:100]),
    "foreign ema": ("checkpoint/ema.safetensors", None),
    "cut metrics line": ("metrics.jsonl", lambda data: data[:-20]),
    "non-UTF-8 spec": ("spec.spec", lambda data: b"\xff\xfe" + data),
    "empty best.json": ("checkpoint/best.json", lambda data: b""),
    "NaN best weights": ("checkpoint/best.safetensors", None),
    "FIFO state.json": ("checkpoint/state.json", None),
    "FIFO spec": ("spec.spec", None),
    "huge metrics": ("metrics.jsonl", None),
}


def _damage(run: Path, kind: str) -> Path:
    name, change = DAMAGES[kind]
    path = run / name
    if change is not None:
        path.write_bytes(change(path.read_bytes()))
    elif kind.startswith("FIFO"):  # reading it would block forever
        path.unlink()
        os.mkfifo(path)
    elif kind.startswith("huge"):  # sparse: 300 MiB that take no disk
        with path.open("r+b") as handle:
            handle.truncate(300 * 2**20)
    elif kind.startswith("NaN"):
        from safetensors.numpy import load, save

        tensors = load(path.read_bytes())
        first = sorted(tensors)[0]
        tensors[first] = tensors[first].copy()
        tensors[first].flat[0] = float("nan")
        path.write_bytes(save(tensors))
    else:
        other = "checkpoint/weights.safetensors" if "state" in name else "checkpoint/state.safetensors"
        path.write_bytes((run / other).read_bytes())
    return path


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_a_damaged_run_is_one_line_naming_the_file(runs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    run = copy_of(runs["stopped"], tmp_path)
    path = _damage(run, kind)
    line = refused(["train", str(runs["spec"]), "-o", str(run), "--resume", "--threads", "1"], run, str(path))
    assert "--force" in line or "differs from the run being resumed" in line


# ------------------------------------------------------------------------------------------ property test

_NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?")


@st.composite
def damages(draw: st.DrawFn) -> tuple[str, str, object]:
    """(state file, kind of damage, its parameters)."""
    name = draw(st.sampled_from(STATE_FILES))
    kind = draw(st.sampled_from(["truncate", "replace", "flip", "number"]))
    where = st.floats(0, 1, exclude_max=True)  # a position, as a fraction of the file
    if kind == "truncate":
        return name, kind, draw(where)
    if kind == "replace":
        return name, kind, draw(st.sampled_from([other for other in STATE_FILES if other != name]))
    if kind == "flip":
        return name, kind, draw(st.lists(st.tuples(where, st.integers(1, 255)), min_size=1, max_size=4))
    return name, kind, (draw(where), draw(st.sampled_from([b"0", b"1", b"-1", b"2", b"0.5", b"1e9"])))


def _apply(path: Path, kind: str, parameter: object, run: Path) -> None:
    data = path.read_bytes()
    if kind == "truncate":
        data = data[: int(parameter * len(data))]
    elif kind == "replace":
        data = (run / parameter).read_bytes()
    elif kind == "flip":
        mutable = bytearray(data)
        for where, mask in parameter:
            if mutable:
                mutable[int(where * len(mutable))] ^= mask
        data = bytes(mutable)
    else:
        where, number = parameter
        if path.suffix == ".safetensors":  # a number of the data: one float32 somewhere past the header
            start = 8 + int.from_bytes(data[:8], "little")
            offset = start + 4 * int(where * ((len(data) - start) // 4))
            data = data[:offset] + struct.pack("<f", float(number)) + data[offset + 4 :]
        else:
            found = list(_NUMBER.finditer(data))
            if found:
                match = found[int(where * len(found))]
                data = data[: match.start()] + number + data[match.end() :]
    path.write_bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=damages())
def test_a_damaged_run_resumes_to_the_same_result_or_is_one_located_line(
    runs: dict[str, Path], damage: tuple[str, str, object]
) -> None:
    name, kind, parameter = damage
    with tempfile.TemporaryDirectory() as scratch:
        run = copy_of(runs["stopped"], Path(scratch))
        _apply(run / name, kind, parameter, run)
        code, _, err = train(runs["spec"], run, "--resume")
        assert code in (0, 2), err
        event("refused" if code else "resumed")
        if code == 2:
            line = one_error_line(err)
            assert line.startswith(str(run)), line  # located: a file of this run
        else:
            assert outcome(run) == outcome(runs["finished"]), (name, kind)  # never a silently different result
