"""Paths read from manifests, labels CSVs and metadata stay inside their root."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from medgan.errors import InputError
from medgan.paths import inside, require_regular_file


def test_inside_accepts_paths_under_the_root(tmp_path: Path) -> None:
    assert inside(tmp_path, "a/b.png", "m.csv") == tmp_path / "a" / "b.png"
    assert inside(tmp_path, "a/../b.png", "m.csv") == tmp_path / "b.png"
    assert inside(tmp_path, tmp_path / "c.png", "m.csv") == tmp_path / "c.png"  # absolute, inside


@pytest.mark.parametrize("rel", ["../x.png", "a/../../x.png", "/etc/passwd", "..", "a/\x00.png"])
def test_inside_refuses_escapes_with_one_line(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InputError) as exc:
        inside(tmp_path / "root", rel, tmp_path / "root" / "manifest.csv")
    msg = str(exc.value)
    assert "manifest.csv" in msg and "\n" not in msg
    assert "leads outside" in msg or "NUL" in msg


def test_evaluate_refuses_a_manifest_pointing_outside_its_folder(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from medgan.generate import generate
    from medgan.metrics.evaluate import load_synthetic

    out = tmp_path / "gen"
    generate(tiny_checkpoint, out, 2, fmt="png", seed=1)
    imgs, labels, _ = load_synthetic(str(out), tmp_path, (1, 16, 16))
    assert len(imgs) == 4 and sorted(labels) == [0, 0, 1, 1]
    m = pd.read_csv(out / "manifest.csv")
    (tmp_path / "secret.png").write_bytes((out / m["path"][0]).read_bytes())  # a readable file outside
    m.loc[1, "path"] = "../secret.png"
    m.to_csv(out / "manifest.csv", index=False)
    with pytest.raises(InputError, match=r"manifest\.csv: path '\.\./secret\.png' leads outside"):
        load_synthetic(str(out), tmp_path, (1, 16, 16))


def test_prepared_folder_refuses_a_shard_outside_it(tiny_data_dir: Path, tmp_path: Path) -> None:
    from medgan.config import config_from_dict
    from medgan.data.prepare import load_prepared, write_prepared
    from medgan.data.sources import load_source
    from tests.conftest import tiny_config

    cfg = config_from_dict(tiny_config())
    out = write_prepared(load_source(cfg.data, tiny_data_dir), tmp_path / "prep", cfg)
    assert len(load_prepared(out)) > 0
    meta = json.loads((out / "prepared.json").read_text())
    meta["shards"][0]["file"] = str(tiny_data_dir / "medmnist" / "tinymnist.npz")  # absolute, elsewhere
    (out / "prepared.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"prepared\.json: shard file '/.*tinymnist\.npz' leads outside"):
        load_prepared(out)


# ---------------------------------------------------------------- one rule: real paths, regular files


@contextlib.contextmanager
def no_hang(seconds: int = 5) -> Iterator[None]:
    """Fail (instead of blocking forever) when the block takes longer than ``seconds``: opening a
    FIFO for reading waits for a writer that never comes, reading /dev/zero never ends."""

    def _timeout(signum: int, frame: object) -> None:
        raise TimeoutError(f"blocked for more than {seconds} s (a FIFO or device was opened)")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)  # again every 0.5 s, should a reader swallow it
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def linked_root(tmp_path: Path) -> Path:
    """``root/`` with a real file, links leading out of it (to a file, through a folder, to
    /etc/passwd) and a link to a file inside it; ``secret.npz`` and ``elsewhere/`` lie outside."""
    root = tmp_path / "root"
    (root / "store").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "secret.npz").write_bytes(b"outside")
    (tmp_path / "elsewhere" / "x.png").write_bytes(b"outside")
    (root / "store" / "real.png").write_bytes(b"inside")
    (root / "to_file.png").symlink_to(tmp_path / "secret.npz")
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "passwd.png").symlink_to("/etc/passwd")
    (root / "alias.png").symlink_to(root / "store" / "real.png")
    return root


@pytest.mark.parametrize("rel", ["to_file.png", "linked/x.png", "passwd.png", "linked/../secret.npz"])
def test_inside_follows_symbolic_links_out_of_the_root(linked_root: Path, rel: str) -> None:
    with pytest.raises(InputError) as exc:
        inside(linked_root, rel, linked_root / "manifest.csv")
    msg = str(exc.value)
    assert msg.startswith(f"{linked_root / 'manifest.csv'}: path {rel!r} leads outside {linked_root}")
    assert "symbolic link" in msg and "\n" not in msg


def test_inside_keeps_links_that_stay_in_the_root(linked_root: Path, tmp_path: Path) -> None:
    where = linked_root / "manifest.csv"
    assert inside(linked_root, "alias.png", where) == linked_root / "store" / "real.png"
    assert inside(linked_root, "store/real.png", where) == linked_root / "store" / "real.png"
    # a root reached through a link: paths stay written under the root as given
    (tmp_path / "root_link").symlink_to(linked_root, target_is_directory=True)
    got = inside(tmp_path / "root_link", "alias.png", where)
    assert got == tmp_path / "root_link" / "store" / "real.png" and got.read_bytes() == b"inside"


def test_require_regular_file_refuses_devices_fifos_sockets_and_folders(tmp_path: Path) -> None:
    fifo, sock_path, zero = tmp_path / "pipe.npz", tmp_path / "s.sock", tmp_path / "zero.npz"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for p in (fifo, zero, sock_path):
            with pytest.raises(InputError, match=r"is not a regular file \(a device, FIFO or socket\)$"):
                require_regular_file(p)
    finally:
        sock.close()
    with pytest.raises(InputError, match=r"is a folder, expected an \.npz file"):
        require_regular_file(tmp_path, expected="an .npz file")
    with pytest.raises(InputError, match=r"l\.csv: row 2: path 'x' not found"):
        require_regular_file(tmp_path / "x", tmp_path / "l.csv", "row 2: path 'x'")
    (tmp_path / "ok.npz").write_bytes(b"x")
    (tmp_path / "link.npz").symlink_to(tmp_path / "ok.npz")
    assert require_regular_file(tmp_path / "link.npz") == tmp_path / "link.npz"


def _fifo_and_dev_zero(tmp_path: Path, name: str) -> list[Path]:
    """``fifo-NAME`` (a FIFO) and ``zero-NAME`` (a link to /dev/zero) under ``tmp_path``."""
    fifo, zero = tmp_path / f"fifo-{name}", tmp_path / f"zero-{name}"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    return [fifo, zero]


@pytest.mark.parametrize("name", ["x.npz", "x.png", "x.nii.gz", "x.dcm", "manifest.csv", "medmnist.npz"])
def test_every_reader_refuses_a_fifo_or_device_before_opening_it(tmp_path: Path, name: str) -> None:
    from medgan.data.manifest import read_manifest
    from medgan.io.dicom import read_dicom_volumes
    from medgan.io.images import read_image
    from medgan.io.medmnist import read_medmnist
    from medgan.io.nifti import read_case
    from medgan.io.npz import read_npz

    readers = {
        "x.npz": read_npz,
        "x.png": read_image,
        "x.nii.gz": read_case,
        "x.dcm": read_dicom_volumes,
        "manifest.csv": read_manifest,
        "medmnist.npz": lambda p: read_medmnist("breastmnist", tmp_path, p, download=False),
    }
    for p in _fifo_and_dev_zero(tmp_path, name):
        with no_hang(), pytest.raises(InputError) as exc:
            readers[name](p)
        msg = str(exc.value)
        assert msg == f"{p}: is not a regular file (a device, FIFO or socket)", msg


def _prepared(tiny_data_dir: Path, out: Path) -> Path:
    from medgan.config import config_from_dict
    from medgan.data.prepare import write_prepared
    from medgan.data.sources import load_source
    from tests.conftest import tiny_config

    cfg = config_from_dict(tiny_config())
    return write_prepared(load_source(cfg.data, tiny_data_dir), out, cfg)


def test_prepared_folder_refuses_a_shard_linked_outside_it(tiny_data_dir: Path, tmp_path: Path) -> None:
    from medgan.data.prepare import load_prepared

    out = _prepared(tiny_data_dir, tmp_path / "prep")
    n = len(load_prepared(out))
    # a link inside the folder to a file inside it keeps working
    (out / "slices-00000.npz").rename(out / "stored.npz")
    (out / "slices-00000.npz").symlink_to("stored.npz")
    assert len(load_prepared(out)) == n
    # the same name linked to an .npz outside the folder (with an 'images' array) is refused
    (tmp_path / "other.npz").write_bytes((out / "stored.npz").read_bytes())
    (out / "slices-00000.npz").unlink()
    (out / "slices-00000.npz").symlink_to(tmp_path / "other.npz")
    with pytest.raises(
        InputError, match=r"prepared\.json: shard file 'slices-00000\.npz' leads outside .*symbolic link"
    ):
        load_prepared(out)


@pytest.mark.parametrize("name", ["prepared.json", "manifest.csv", "slices-00000.npz"])
def test_prepared_folder_refuses_a_fifo_in_place_of_a_file(
    tiny_data_dir: Path, tmp_path: Path, name: str
) -> None:
    from medgan.data.prepare import load_prepared

    out = _prepared(tiny_data_dir, tmp_path / "prep")
    (out / name).unlink()
    os.mkfifo(out / name)
    with no_hang(), pytest.raises(InputError, match=rf"{re.escape(name)}: is not a regular file"):
        load_prepared(out)
