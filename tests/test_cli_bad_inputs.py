"""Every command, a handful of bad inputs: exit 2, one line on stderr, no new files.

A user's mistake (a missing or broken file, a config that cannot be read, a checkpoint that is
not one, an output folder that cannot be made) must never end in exit 1 ("internal error") or
a traceback, and must not leave anything behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from medgan.cli import main
from tests.conftest import tiny_config


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture()
def world(tmp_path: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    """A working folder with good and bad inputs, and the run folder of a real tiny checkpoint."""
    w = tmp_path / "w"
    w.mkdir()
    good = tiny_config(steps=2)
    good["augment"] = {"checkpoint": str(tiny_checkpoint), "ratio": 1.0}
    (w / "good.yaml").write_text(yaml.safe_dump(good))
    (w / "dupkey.yaml").write_text("name: a\nname: b\n")
    (w / "deep.yaml").write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    (w / "broken.yaml").write_text("data: [unclosed\n")
    (w / "unknown.yaml").write_text(yaml.safe_dump({**good, "dataa": 1}))
    (w / "notyaml.txt").write_bytes(b"\xff\xfe\x00garbage")
    (w / "a_file").write_text("not a folder\n")
    (w / "fake.safetensors").write_bytes(b"\x80\x04not a checkpoint")
    os.mkfifo(w / "fifo.yaml")
    os.mkfifo(w / "fifo.safetensors")
    (w / "nan_ckpt").mkdir()
    # image folders a user might bring: one patient in train and test; an animated GIF
    import numpy as np
    from PIL import Image

    pics = w / "pics"
    pics.mkdir()
    frames = [Image.fromarray(np.full((8, 8), 40 * i, np.uint8)) for i in range(4)]
    for i, f in enumerate(frames):
        f.save(pics / f"{i}.png")
    frames[0].save(pics / "anim.gif", save_all=True, append_images=frames[1:])
    (pics / "leak.csv").write_text(
        "path,label,patient_id,split\n0.png,a,P1,train\n1.png,b,P1,test\n2.png,a,P2,val\n"
    )
    (pics / "gif.csv").write_text("path,label\n0.png,a\nanim.gif,b\n")
    return {"w": w, "ckpt": tiny_checkpoint}


def _cases(w: Path, ckpt: Path) -> list[list[str]]:
    good, under_file = str(w / "good.yaml"), str(w / "a_file" / "out")
    bad_configs = [
        "missing.yaml",
        "dupkey.yaml",
        "deep.yaml",
        "broken.yaml",
        "unknown.yaml",
        "notyaml.txt",
        "fifo.yaml",
    ]
    cases: list[list[str]] = []
    for cmd in (["train"], ["run"], ["study"], ["augment"], ["data", "prepare"]):
        out = ["--out", str(w / "o")]
        cases += [[*cmd, str(w / c), *out] for c in bad_configs]
        cases += [
            [*cmd, good, *out, "--set", "data..size=5"],
            [*cmd, good, *out, "--set", "data.size=100000000"],
            [*cmd, good, *out, "--set", "data.size"],
        ]
    for cmd in (["train"], ["augment"], ["data", "prepare"]):
        cases.append([*cmd, good, "--out", under_file])
    for src in (
        "missing.npz",
        "fake.safetensors",
        "a_file",
        "fifo.yaml",
        "dupkey.yaml",
        "medmnist:nosuchset",
    ):
        cases.append(["data", "inspect", str(w / src) if ":" not in src else src])
    for c in ("missing.safetensors", "fake.safetensors", "fifo.safetensors", "good.yaml", "nan_ckpt"):
        cases.append(["generate", "--checkpoint", str(w / c), "--out", str(w / "g"), "--n-per-class", "2"])
        cases.append(["export-bundle", str(w / c), "--out", str(w / "b")])
    cases += [
        ["generate", "--checkpoint", str(ckpt), "--out", under_file, "--n-per-class", "2"],
        ["generate", "--checkpoint", str(ckpt), "--out", str(w / "a_file"), "--n-per-class", "2"],
        ["generate", "--checkpoint", str(ckpt), "--out", str(w / "g"), "--n-per-class", "0"],
        ["export-bundle", str(ckpt), "--out", str(w / "a_file")],
        ["evaluate", "--real", str(w / "missing.npz"), "--synthetic", str(w / "g")],
        ["evaluate", "--real", "medmnist:tinymnist:test", "--synthetic", str(w / "a_file")],
        ["evaluate", "--real", "medmnist:tinymnist:nosplit", "--synthetic", str(w / "nan_ckpt")],
        # issue 27: values that cannot mean what they say, outputs that cannot fit
        ["generate", "--checkpoint", str(ckpt), "--out", str(w / "g"), "--n-per-class", "1000000000000"],
        ["train", good, "--out", str(w / "o"), "--set", "train.steps=true"],
        ["train", good, "--out", str(w / "o"), "--set", "seed=100000000000000000000"],
        ["data", "inspect", str(w / "pics" / "leak.csv")],
        ["data", "inspect", str(w / "pics" / "gif.csv")],
    ]
    return cases


def test_every_command_refuses_bad_input_with_one_line_and_exit_2(
    world: dict[str, Path],
    tiny_data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world["w"]
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(tiny_data_dir))
    monkeypatch.chdir(w)  # a default runs/<name> folder would appear here
    data_before = _files(tiny_data_dir)
    failures = []
    cases = _cases(w, world["ckpt"])
    assert len(cases) > 60
    for argv in cases:
        before = _files(w)
        code = main(argv)
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        new = _files(w) - before
        ok = code == 2 and len(lines) == 1 and lines[0].startswith("medgan: error: ") and not new
        if not ok:
            failures.append(
                f"medgan {' '.join(argv)} -> exit {code}, stderr {lines[:3]}, new files {sorted(new)[:3]}"
            )
        for name in new:  # leave the next case a clean world
            p = w / name
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    assert _files(tiny_data_dir) == data_before
    assert failures == [], "\n".join(failures)


def _warn_then(result: object):  # a library function that warns on its way, like pydicom or Pillow
    def fn(*args: object, **kwargs: object) -> object:
        import warnings

        warnings.warn("Invalid value for VR UI: '1.2.3.A'", UserWarning, stacklevel=2)
        warnings.warn("Invalid value for VR UI: '1.2.3.A'", UserWarning, stacklevel=2)
        if isinstance(result, Exception):
            raise result
        return result

    return fn


def test_library_warnings_stay_off_stderr_on_success_and_show_with_verbose(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_data_dir: Path
) -> None:
    import medgan.data.inspect as inspect_mod

    monkeypatch.setenv("MEDGAN_DATA_DIR", str(tiny_data_dir))
    real = inspect_mod.summarize
    monkeypatch.setattr(inspect_mod, "summarize", lambda ss: _warn_then(real(ss))())
    assert main(["data", "inspect", "medmnist:tinymnist"]) == 0
    out, err = capsys.readouterr()
    assert "tinymnist" in out and err == ""
    assert main(["--verbose", "data", "inspect", "medmnist:tinymnist"]) == 0
    assert capsys.readouterr().err == "medgan: note: UserWarning: Invalid value for VR UI: '1.2.3.A'\n"


def test_library_warning_is_folded_into_the_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_data_dir: Path
) -> None:
    import medgan.data.inspect as inspect_mod
    from medgan.errors import InputError

    monkeypatch.setenv("MEDGAN_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setattr(inspect_mod, "summarize", _warn_then(InputError("x.dcm", "cannot decode")))
    assert main(["data", "inspect", "medmnist:tinymnist"]) == 2
    assert capsys.readouterr().err == (
        "medgan: error: x.dcm: cannot decode (library warning: UserWarning: Invalid value for VR UI: '1.2.3.A')\n"
    )
