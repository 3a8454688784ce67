"""No patient data in outputs: train from DICOM series that carry identifiers, scan everything written.

Three patients, one CT series each, with name, ID, birth date, institution, accession number and
more; a DICOM SEG marks the lesion slices. ``medgan run`` (train, generate, evaluate, study,
report) and ``medgan generate`` in every format, plus ``medgan augment``, write their outputs;
every byte of every file they wrote is searched for every identifier (as written in the DICOM,
and in the other spellings a writer could produce). The only DICOM identity allowed in a
generated file is the synthetic marker. ``medgan data prepare`` is scanned too: by default its
folder holds pseudonymous patient keys only; with ``--keep-source-ids`` the scan must find the
patient IDs (which proves the scan finds what is there).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import yaml

from medgan.cli import main
from tests.conftest import tiny_config
from tests.io.test_dicom import write_seg, write_slice
from tests.synthesis.test_cyclegan import tiny_cycle_config

PATIENTS = [
    {
        "PatientName": "Doe^Jane^Q",
        "PatientID": "MRN-55501234",
        "PatientBirthDate": "19610203",
        "InstitutionName": "St Elsewhere General Hospital",
        "AccessionNumber": "ACC77310419",
        "ReferringPhysicianName": "Kildare^James",
        "OtherPatientIDs": "OPID-88127",
        "PatientAddress": "12 Lantern Row Springfield",
        "StudyID": "STU-4417",
    },
    {
        "PatientName": "Roe^Richard",
        "PatientID": "MRN-55509876",
        "PatientBirthDate": "19740915",
        "InstitutionName": "Mercy Lakeside Clinic",
        "AccessionNumber": "ACC99120377",
        "ReferringPhysicianName": "Casey^Ben",
        "OtherPatientIDs": "OPID-20931",
        "PatientAddress": "7 Orchard Close Shelbyville",
        "StudyID": "STU-9023",
    },
    {
        "PatientName": "Smith^Alice",
        "PatientID": "MRN-55504321",
        "PatientBirthDate": "19880512",
        "InstitutionName": "Northfield University Medical Centre",
        "AccessionNumber": "ACC31415926",
        "ReferringPhysicianName": "Quinn^Mike",
        "OtherPatientIDs": "OPID-66160",
        "PatientAddress": "99 Harbour Street Ogdenville",
        "StudyID": "STU-1207",
    },
]
SLICES = 12


def _needles() -> list[bytes]:
    """Every identifier, as stored and in the other forms an output could carry it."""
    out: set[str] = set()
    for p in PATIENTS:
        for value in p.values():
            out |= {value, value.replace("^", " "), value.upper(), value.lower()}
            out |= {part for part in value.replace("^", " ").split() if len(part) >= 4}
        d = p["PatientBirthDate"]
        out |= {f"{d[:4]}-{d[4:6]}-{d[6:]}", f"{d[6:]}/{d[4:6]}/{d[:4]}", f"{d[4:6]}/{d[6:]}/{d[:4]}"}
    # generic words inside names and places would match unrelated text
    out -= {"Hospital", "HOSPITAL", "hospital", "General", "GENERAL", "general", "Clinic", "CLINIC"}
    out -= {"clinic", "Medical", "MEDICAL", "medical", "Centre", "CENTRE", "centre", "Street", "STREET"}
    out -= {"street", "University", "UNIVERSITY", "university", "Close", "CLOSE", "close", "James", "JAMES"}
    out -= {"james", "Richard", "RICHARD", "richard", "Alice", "ALICE", "alice", "Mike", "MIKE", "mike"}
    return sorted({s.encode() for s in out} | {s.encode("utf-16-le") for s in out if len(s) >= 6})


def _texts(path: Path) -> list[bytes]:
    """The file's bytes, plus anything compressed inside it (PNG zTXt/iTXt, .gz, .npz members)."""
    data = path.read_bytes()
    out = [data]
    if path.suffix == ".gz":
        import gzip

        out.append(gzip.decompress(data))
    if path.suffix == ".npz" or data[:2] == b"PK":
        import zipfile

        with zipfile.ZipFile(path) as z:
            out += [z.read(n) for n in z.namelist()]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):
            n = int.from_bytes(data[i : i + 4], "big")
            kind, body = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
            if kind in (b"zTXt", b"iCCP"):
                out.append(zlib.decompress(body[body.index(b"\0") + 2 :]))
            elif kind == b"iTXt" and body[body.index(b"\0") + 1] == 1:
                out.append(zlib.decompress(body[body.index(b"\0") + 3 :].split(b"\0", 2)[-1]))
            i += 12 + n
    return out


def _scan(root: Path, uids: list[bytes] = ()) -> list[tuple[str, str]]:  # type: ignore[assignment]
    """(file, identifier) for every identifier (and every one of ``uids``) found in any file under ``root``."""
    needles = [*_needles(), *uids]
    return [
        (p.relative_to(root).as_posix(), n.decode(errors="replace"))
        for p in sorted(root.rglob("*"))
        if p.is_file()
        for text in _texts(p)
        for n in needles
        if n in text
    ]


def _write_patients(root: Path) -> Path:
    """Three CT series (12 slices of 16x16) with identifiers; a SEG marking slices 6-11 of each."""
    rng = np.random.default_rng(0)
    refs, masks = [], []
    for k, tags in enumerate(PATIENTS):
        series = pydicom.uid.generate_uid()
        for z in range(SLICES):
            px = (
                rng.normal(40, 30, (16, 16)) + 200 * (z >= SLICES // 2) * (rng.random((16, 16)) > 0.7)
            ).astype(np.int16)
            ds = write_slice(
                root / "ct" / f"p{k}" / f"{z:03d}.dcm",
                px,
                series=series,
                z=float(z * 3),
                instance=z + 1,
                StudyInstanceUID=f"1.2.826.0.1.3680043.10.1{k}",
                **tags,
            )
            if z >= SLICES // 2:
                m = np.zeros((16, 16), np.uint8)
                m[4:12, 4:12] = 1
                refs.append(ds)
                masks.append(m)
    write_seg(root / "seg.dcm", np.stack(masks), refs, [1] * len(refs), {1: "lesion"})
    # a file of patient 0's series without pixel data, named by its SOP Instance UID as archives
    # often name them: the reader's warning about it quotes the name
    ds = pydicom.dcmread(root / "ct" / "p0" / "000.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    del ds.PixelData
    ds.save_as(root / "ct" / "p0" / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return root


def _uids(root: Path) -> list[bytes]:
    """The study, series, instance and frame-of-reference UIDs of every input DICOM file."""
    out: set[str] = set()
    for p in root.rglob("*.dcm"):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if kw in ds:
                out.add(str(ds.get(kw)))
    return sorted(u.encode() for u in out)


@pytest.mark.slow
def test_no_patient_identifier_in_any_output(tmp_path: Path) -> None:
    class _Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    data = _write_patients(tmp_path / "data")
    outputs = tmp_path / "outputs"  # everything medgan writes goes under here
    feats = tmp_path / "pool.pt"
    torch.jit.script(_Pool()).save(str(feats))
    cfg = tiny_config(steps=4)
    cfg["data"] = {"source": {"kind": "dicom", "path": "ct", "mask": "seg.dcm"}, "size": 16}
    cfg["classifier"] = {"epochs": 1, "width": 4, "patience": 1, "batch_size": 8}
    cfg["study"] = {"arms": ["real", "cgan"], "ratios": [0.5], "seeds": 1, "n_boot": 10, "min_per_class": 1}
    cfg["pipeline"] = {"features": str(feats), "eval_per_class": 4}
    cfg["augment"] = {"checkpoints": [str(outputs / "run" / "cgan")], "ratio": 1.0, "format": "png"}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    common = ["--data-dir", str(data)]
    assert main(["run", str(tmp_path / "cfg.yaml"), "--out", str(outputs / "run"), *common]) == 0
    ckpt = outputs / "run" / "cgan"
    for fmt in ("dicom", "nifti", "png", "npz"):
        args = [
            "generate",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(outputs / f"gen-{fmt}"),
            "--n-per-class",
            "3",
        ]
        assert main([*args, "--format", fmt, "--device", "cpu"]) == 0
    assert main(["augment", str(tmp_path / "cfg.yaml"), "--out", str(outputs / "augmented"), *common]) == 0
    assert (
        main(["data", "prepare", str(tmp_path / "cfg.yaml"), "--out", str(outputs / "prepared"), *common])
        == 0
    )
    kept = tmp_path / "prepared-with-ids"  # outside ``outputs``: it is meant to hold the IDs
    assert (
        main(
            ["data", "prepare", str(tmp_path / "cfg.yaml"), "--out", str(kept), "--keep-source-ids", *common]
        )
        == 0
    )
    assert main(["export-bundle", str(ckpt), "--out", str(outputs / "bundle")]) == 0
    # the CycleGAN (healthy <-> lesion) on the same series, and translations of real slices
    cyc = tiny_cycle_config(steps=4)
    cyc["data"] = cfg["data"]
    cyc["classifier"] = {"epochs": 1, "width": 4, "patience": 1}
    (tmp_path / "cyc.yaml").write_text(yaml.safe_dump(cyc))
    assert main(["train", str(tmp_path / "cyc.yaml"), "--out", str(outputs / "cyclegan"), *common]) == 0
    src = str(tmp_path / "cfg.yaml")
    for fmt in ("dicom", "nifti", "png"):
        args = ["generate", "--checkpoint", str(outputs / "cyclegan"), "--translate", "A2B", "--input", src]
        assert main([*args, "--out", str(outputs / f"translated-{fmt}"), "--format", fmt, *common]) == 0

    # the scan finds identifiers where they are: every patient's in the inputs
    inputs = b"".join(p.read_bytes() for p in data.rglob("*.dcm"))
    assert all(v.encode() in inputs for pt in PATIENTS for v in pt.values())

    files = [p for p in outputs.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".dcm", ".gz", ".png", ".npz", ".csv", ".json", ".md", ".html", ".safetensors"} <= kinds
    assert (outputs / "prepared" / "manifest.csv").is_file()
    # the reader's warning reached the run's data summary, without the file's UID name
    assert "[uid]" in (outputs / "run" / "data_summary.json").read_text(encoding="utf-8")
    uids = _uids(data)
    assert len(uids) > 3 * SLICES
    found = _scan(outputs, uids)
    assert found == [], f"patient data in outputs: {found[:20]}"
    # asked to keep them, prepare writes the patient IDs into its manifest, and the scan sees them
    in_kept = {(f, n) for f, n in _scan(kept)}
    assert {("manifest.csv", pt["PatientID"]) for pt in PATIENTS} <= in_kept

    # the synthetic DICOM carries the synthetic marker, and no identity but that
    for p in [*(outputs / "gen-dicom").rglob("*.dcm"), *(outputs / "translated-dicom").rglob("*.dcm")]:
        ds = pydicom.dcmread(p)
        assert ds.PatientName == "SYNTHETIC" or "SYNTHETIC" in str(ds.PatientName).upper()
        for kw in (
            "PatientBirthDate",
            "InstitutionName",
            "AccessionNumber",
            "OtherPatientIDs",
            "PatientAddress",
        ):
            assert not str(ds.get(kw, "")).strip(), kw
