"""``medgan data prepare``: no patient identifiers in the prepared folder unless asked for.

The DICOM fixture is the one of ``tests/test_no_phi.py``: three CT series whose headers carry a
PatientID and series / SOP instance UIDs. The prepared manifest must carry pseudonymous patient
keys (HMAC-SHA256 under a salt kept beside the data) with the same patient grouping, and no
input UIDs; ``--keep-source-ids`` keeps them.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medgan.cli import main
from medgan.config import config_from_dict
from medgan.data.prepare import SALT_FILE, load_prepared, patient_key
from medgan.data.sources import load_source
from medgan.errors import InputError
from tests.test_no_phi import PATIENTS, _write_patients

RAW_IDS = [p["PatientID"] for p in PATIENTS]


@pytest.fixture(scope="module")
def dicom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three-patient DICOM folder (``ct/``, ``seg.dcm``) and ``cfg.yaml`` preparing it."""
    root = _write_patients(tmp_path_factory.mktemp("phi") / "data")
    data = {"source": {"kind": "dicom", "path": "ct", "mask": "seg.dcm"}, "size": 16}
    (root / "cfg.yaml").write_text(yaml.safe_dump({"data": data}))
    return root


def prepare(capsys: pytest.CaptureFixture[str], data: Path, out: Path, *extra: str) -> tuple[int, str]:
    """``medgan data prepare`` of the fixture into ``out``: (exit code, stderr)."""
    code = main(
        ["data", "prepare", str(data / "cfg.yaml"), "--out", str(out), "--data-dir", str(data), *extra]
    )
    return code, capsys.readouterr().err


def keys_of(out: Path) -> dict[str, str]:
    """slice source -> patient key in the prepared manifest."""
    m = pd.read_csv(out / "manifest.csv", dtype=str)
    return dict(zip(m["source"], m["patient_id"], strict=True))


def test_prepared_manifest_has_pseudonymous_keys_and_no_uids(
    capsys: pytest.CaptureFixture[str], dicom_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prep"
    code, err = prepare(capsys, dicom_data, out)
    assert code == 0, err
    salt = (out / SALT_FILE).read_bytes()
    assert len(salt) == 32 and stat.S_IMODE(os.stat(out / SALT_FILE).st_mode) == 0o600
    text = (out / "manifest.csv").read_text() + (out / "prepared.json").read_text()
    assert not [pid for pid in RAW_IDS if pid in text]
    m = pd.read_csv(out / "manifest.csv", dtype=str)
    assert m["series_uid"].isna().all() and m["sop_instance_uid"].isna().all()
    assert m["patient_id"].str.fullmatch(r"p-[0-9a-f]{16}").all()
    # each patient's key is HMAC-SHA256(salt, ID); the grouping and the splits are the source's
    raw = load_source(
        config_from_dict(yaml.safe_load((dicom_data / "cfg.yaml").read_text())).data, dicom_data
    )
    ss = load_prepared(out)
    assert ss.manifest["patient_id"].tolist() == [patient_key(salt, p) for p in raw.manifest["patient_id"]]
    assert ss.manifest["split"].tolist() == raw.manifest["split"].tolist()
    assert ss.manifest.groupby("patient_id")["split"].nunique().eq(1).all()
    assert ss.manifest["patient_id"].nunique() == len(RAW_IDS)
    meta = json.loads((out / "prepared.json").read_text())
    assert meta["patient_ids"] == f"HMAC-SHA256 keys, salt in {SALT_FILE}"


def test_salt_file_gives_the_same_keys_to_every_prepare(
    capsys: pytest.CaptureFixture[str], dicom_data: Path, tmp_path: Path
) -> None:
    salt_file = tmp_path / "keys" / "hospital.salt"
    assert prepare(capsys, dicom_data, tmp_path / "a", "--salt-file", str(salt_file))[0] == 0
    assert stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600 and len(salt_file.read_bytes()) == 32
    assert prepare(capsys, dicom_data, tmp_path / "b", "--salt-file", str(salt_file))[0] == 0
    assert keys_of(tmp_path / "a") == keys_of(tmp_path / "b")
    assert (tmp_path / "a" / SALT_FILE).read_bytes() == salt_file.read_bytes()
    # without it, a new folder gets a new salt; overwriting a folder keeps the folder's
    assert prepare(capsys, dicom_data, tmp_path / "c")[0] == 0
    first = keys_of(tmp_path / "c")
    assert set(first.values()).isdisjoint(keys_of(tmp_path / "a").values())
    assert prepare(capsys, dicom_data, tmp_path / "c", "--overwrite")[0] == 0
    assert keys_of(tmp_path / "c") == first


def test_keep_source_ids_keeps_patient_ids_and_uids_with_a_warning(
    capsys: pytest.CaptureFixture[str], dicom_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prep"
    code, err = prepare(capsys, dicom_data, out, "--keep-source-ids")
    assert code == 0 and "holds patient IDs and DICOM UIDs (--keep-source-ids)" in err
    m = pd.read_csv(out / "manifest.csv", dtype=str)
    assert sorted(m["patient_id"].unique()) == sorted(RAW_IDS)
    assert m["series_uid"].notna().all() and m["sop_instance_uid"].notna().all()
    assert not (out / SALT_FILE).exists()


@pytest.mark.parametrize("bad", ["short", "fifo", "folder"])
def test_unusable_salt_file_is_one_line_and_nothing_written(
    capsys: pytest.CaptureFixture[str], dicom_data: Path, tmp_path: Path, bad: str
) -> None:
    from tests.test_paths import no_hang

    salt_file = tmp_path / "s.salt"
    if bad == "short":
        salt_file.write_bytes(b"0123")
    elif bad == "fifo":
        os.mkfifo(salt_file)
    else:
        salt_file.mkdir()
    out = tmp_path / "prep"
    with no_hang():
        code, err = prepare(capsys, dicom_data, out, "--salt-file", str(salt_file))
    assert code == 2 and err.count("\n") == 1 and f"{salt_file}: " in err, err
    assert not out.exists()


def test_load_prepared_refuses_a_prepared_json_of_the_wrong_shape(
    capsys: pytest.CaptureFixture[str], dicom_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "prep"
    assert prepare(capsys, dicom_data, out)[0] == 0
    good = json.loads((out / "prepared.json").read_text())
    for broken in ([], {**good, "shards": "x"}, {**good, "shape": [1, "a", 2]}, {**good, "shards": [{}]}):
        (out / "prepared.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=r"prepared\.json: not a prepared\.json written by medgan"):
            load_prepared(out)


def test_reader_warnings_in_prepared_json_lose_uids_and_patient_ids(dicom_data: Path, tmp_path: Path) -> None:
    from medgan.data.prepare import write_prepared

    cfg = config_from_dict(yaml.safe_load((dicom_data / "cfg.yaml").read_text()))
    ss = load_source(cfg.data, dicom_data)
    uid, pid = str(ss.manifest["series_uid"].iloc[0]), str(ss.manifest["patient_id"].iloc[0])
    ss.info["warnings"] = [f"series {uid}: 2 slices share position 10 mm.", f"patient {pid}: odd header"]
    out = write_prepared(ss, tmp_path / "prep", cfg)
    text = (out / "prepared.json").read_text()
    assert uid not in text and pid not in text
    key = patient_key((out / SALT_FILE).read_bytes(), pid)
    assert load_prepared(out).info["warnings"] == [
        "series [uid]: 2 slices share position 10 mm.",
        f"patient {key}: odd header",
    ]
    kept = write_prepared(ss, tmp_path / "kept", cfg, keep_source_ids=True)
    assert load_prepared(kept).info["warnings"] == ss.info["warnings"]
