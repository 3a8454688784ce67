"""A standard DICOM SEG written by highdicom: medgan's own frame mapping gives the masks highdicom gives.

medgan maps SEG frames itself (highdicom's reader refuses the minimal SEGs of older tools, which
tests/io/test_dicom.py pins); on a SEG highdicom can read, both must agree.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from medgan.io.dicom import read_dicom_volumes
from tests.io.test_dicom import write_slice


def _series(folder: Path) -> list[Dataset]:
    """4 axial slices (z = 0..3) with the patient / study attributes a SEG copies from its sources."""
    uid, frame_of_reference = generate_uid(), generate_uid()
    common = {
        "PatientName": "Test^Patient",
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyDate": "20260101",
        "StudyTime": "000000",
        "ReferringPhysicianName": "",
        "StudyID": "1",
        "AccessionNumber": "",
        "FrameOfReferenceUID": frame_of_reference,
        "SeriesNumber": 1,
    }
    return [
        write_slice(
            folder / f"{k}.dcm",
            np.full((8, 8), 100 * k, np.int16),
            series=uid,
            z=float(k),
            instance=4 - k,
            **common,
        )
        for k in range(4)
    ]


def test_highdicom_seg_maps_as_highdicom_maps_it(tmp_path: Path) -> None:
    refs = _series(tmp_path / "series")
    masks = np.zeros((4, 8, 8, 2), dtype=bool)
    masks[1, 1:3, 1:4, 0] = True  # segment 1 on z = 1
    masks[3, 4:8, 4:8, 1] = True  # segment 2 on z = 3
    masks[3, 0, 0, 0] = True  # and segment 1 there too
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type="MANUAL",
        )
        for i, label in enumerate(["Liver", "Tumor"])
    ]
    seg = hd.seg.Segmentation(
        source_images=refs,
        pixel_array=masks,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)

    (vol,) = read_dicom_volumes(tmp_path / "series", mask=path)
    assert vol.mask is not None and vol.mask.reshape(4, -1).sum(1).tolist() == [0, 6, 0, 17]
    theirs = hd.seg.segread(path).get_pixels_by_source_instance(
        [str(u) for u in vol.sop_uids or []], assert_missing_frames_are_empty=True
    )
    np.testing.assert_array_equal(vol.mask, theirs.any(axis=-1).astype(np.uint8))

    (only2,) = read_dicom_volumes(tmp_path / "series", mask=path, segments=[2])
    assert only2.mask is not None and only2.mask.reshape(4, -1).sum(1).tolist() == [0, 0, 0, 16]
