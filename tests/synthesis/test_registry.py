"""The synthesizer registry: one entry per model.kind, and the crashes it removed (issue 16).

A kind is one plug-in (issue 25): its config class, its modules and one registry entry. The stages
dispatch through the registry and never name a kind (:func:`test_no_stage_names_a_kind`).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medgan.cli import main
from medgan.config import MODEL_CONFIGS, CGANConfig, CycleGANConfig, config_from_dict
from medgan.errors import ConfigError
from medgan.synthesis import registry
from medgan.synthesis.registry import cyclegan_domains
from medgan.training.checkpoint import checkpoint_meta
from tests.conftest import TINY_DIFFUSION, TINY_SPADE, tiny_config

REPO = Path(__file__).resolve().parents[2]
#: Modules that must reach every synthesizer through the registry, never by a kind's name.
KIND_FREE = (
    "medgan/run.py",
    "medgan/study",
    "medgan/generate.py",
    "medgan/augment.py",
    "medgan/bundle.py",
    "medgan/monai/data.py",
    "medgan/monai/transforms.py",
)


def test_every_config_kind_has_one_entry() -> None:
    assert set(registry.KINDS) == set(MODEL_CONFIGS)
    for kind, entry in registry.KINDS.items():
        assert entry.kind == kind and entry.config is MODEL_CONFIGS[kind]
    assert registry.get("cgan").makes == "samples" and registry.get("cyclegan").makes == "translations"
    assert registry.get("diffusion").makes == "samples" and registry.get("diffusion").sized
    with pytest.raises(ConfigError, match=r"model.kind: unknown synthesizer kind 'vae'"):
        registry.get("vae")


def _kind_mentions(path: Path) -> list[str]:
    """Every identifier or string constant (docstrings aside) in ``path`` that names a synthesizer kind."""
    kinds = "|".join(sorted(MODEL_CONFIGS, key=len, reverse=True))
    word = re.compile(rf"(?<![a-z])({kinds})(?![a-z])", re.IGNORECASE)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
        and isinstance(n.body[0].value.value, str)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.ImportFrom):
            text = node.module or ""
        else:
            continue
        if word.search(text.replace("_", " ")):
            found.append(f"{path.name}:{getattr(node, 'lineno', '?')}: {text!r}")
    return found


def test_no_stage_names_a_kind() -> None:
    """``run``, ``study``, ``generate``, ``augment``, ``export-bundle`` and the MONAI plug-in dispatch
    through the registry: a new kind needs no change there (docs/architecture.md's recipe)."""
    files = [
        p
        for rel in KIND_FREE
        for p in ([REPO / rel] if rel.endswith(".py") else sorted((REPO / rel).rglob("*.py")))
    ]
    assert len(files) > len(KIND_FREE)  # the study package's modules are all read
    found = [m for p in files for m in _kind_mentions(p)]
    assert not found, "a stage names a synthesizer kind:\n" + "\n".join(found)


def test_the_kind_check_sees_a_kind_name(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Docstrings may say cgan."""\nfrom medgan.synthesis.cgan import X\nA = {"cyclegan": 1}\nb = x.cgan_steps\n'
    )
    assert len(_kind_mentions(probe)) == 3


def test_each_entry_implements_the_protocol_of_what_it_makes(
    tiny_checkpoint: Path, tiny_diffusion_checkpoint: Path, tiny_spade_checkpoint: Path
) -> None:
    from medgan.synthesis.protocols import Exportable, PairSampler, Sampler, Translator

    for ck in (tiny_checkpoint, tiny_diffusion_checkpoint, tiny_spade_checkpoint):
        entry = registry.checkpoint_kind(ck)
        synth = registry.load(ck)
        assert isinstance(synth, Sampler) and not isinstance(synth, Translator)
        assert isinstance(synth, Exportable) == entry.exports
        assert isinstance(synth, PairSampler) == entry.pairs
    assert registry.KINDS["cyclegan"].exports is False


def test_each_kind_builds_a_task_the_fit_loop_can_drive(tiny_data_dir: Path) -> None:
    import torch

    from medgan.training.loop import SelectableTask, Task

    x = np.random.default_rng(0).uniform(-1, 1, (8, 1, 16, 16)).astype(np.float32)
    y = np.arange(8) % 2
    models = {
        "cgan": tiny_config()["model"],
        "cyclegan": {"kind": "cyclegan", "g_channels": 8, "n_res_blocks": 1},
        "diffusion": TINY_DIFFUSION,
        "spade": TINY_SPADE,
    }
    masks = registry.TrainMasks((x[:, :1] > 0.5).astype(np.uint8), [f"m{i}.png" for i in range(8)])
    assert set(models) == set(registry.KINDS)
    for kind, entry in registry.KINDS.items():
        model = dict(models[kind])
        cfg = config_from_dict({**tiny_config(), "model": model})
        meta = {"classes": ["0", "1"], "shape": [1, 16, 16], **entry.describe(cfg.model, ["0", "1"])}
        task = entry.build_task(cfg, x, y, meta, torch.device("cpu"), masks=masks if entry.pairs else None)
        assert isinstance(task, Task)
        assert isinstance(task, SelectableTask) == entry.selects, kind


def test_a_kind_that_cannot_do_it_is_refused_naming_model_kind() -> None:
    with pytest.raises(
        ConfigError,
        match=r"model.kind: 'cyclegan' is a CycleGAN.*needs a cgan or diffusion or spade checkpoint",
    ):
        registry.get("cyclegan", makes="samples")


def test_domains_resolve_class_names_and_indices() -> None:
    classes = ["normal, benign", "malignant"]
    mc = CycleGANConfig(kind="cyclegan", domain_a="malignant", domain_b="normal, benign")
    assert cyclegan_domains(mc, classes) == {
        "mode": "labels",
        "a": "malignant",
        "b": "normal, benign",
        "label_a": 1,
        "label_b": 0,
    }
    assert (
        cyclegan_domains(CycleGANConfig(kind="cyclegan", domain_a=1, domain_b="0"), classes)["label_a"] == 1
    )
    with pytest.raises(ConfigError, match=r"study.cyclegan.domain_a: 'lesion' is not one of"):
        cyclegan_domains(CycleGANConfig(kind="cyclegan", domain_a="lesion"), classes, "study.cyclegan")


# ---------------------------------------------------------------- config: a kind's keys, in its section


def test_cgan_training_keys_live_in_the_model_and_older_configs_still_load() -> None:
    base = tiny_config()
    model = {**base["model"], "loss": "rpgan", "ema_kimg": 5, "diffaugment": "auto"}
    new = config_from_dict({**base, "model": model})
    old = config_from_dict(tiny_config(loss="rpgan", ema_kimg=5, diffaugment="auto"))  # under train:
    assert isinstance(new.model, CGANConfig) and new.model == old.model
    assert new.model.loss == "rpgan" and not hasattr(new.train, "loss")
    with pytest.raises(ConfigError, match=r"train.loss: given twice: write it once, as model.loss"):
        config_from_dict({**tiny_config(loss="hinge"), "model": {"loss": "rpgan"}})


def test_a_cgan_key_in_a_cyclegan_config_is_refused_not_ignored() -> None:
    raw = {**tiny_config(loss="wgan-gp"), "model": {"kind": "cyclegan"}}
    with pytest.raises(
        ConfigError, match=r"cfg.yaml: train.loss: is a cgan\S* training key; model.kind 'cyclegan'"
    ):
        config_from_dict(raw, "cfg.yaml")


def test_cyclegan_keeps_its_reference_training_defaults_unless_set() -> None:
    cfg = config_from_dict({**tiny_config(), "model": {"kind": "cyclegan"}, "train": {"steps": 3}})
    assert cfg.train.betas == (0.5, 0.999) and cfg.train.lr_schedule == "linear_decay"
    assert cfg.train.batch_size == 8 and cfg.model.diffaugment == []
    cfg = config_from_dict({**tiny_config(), "model": {"kind": "cyclegan"}, "train": {"batch_size": 2}})
    assert cfg.train.batch_size == 2
    assert config_from_dict(tiny_config()).train.betas == (0.0, 0.99)  # the cGAN's shared defaults


def test_study_synthesizer_sections_are_typed() -> None:
    raw = {**tiny_config(), "study": {"models": {"cyclegan": {"domain_a": 1, "n_res_block": 3}}}}
    with pytest.raises(ConfigError, match=r"study.models.cyclegan.n_res_block: unknown key"):
        config_from_dict(raw)
    raw = {**tiny_config(), "study": {"models": {"diffusion": {"guidance": 2}}}}
    with pytest.raises(ConfigError, match=r"study.models.diffusion.guidance: unknown key"):
        config_from_dict(raw)
    st = config_from_dict({**tiny_config(), "study": {"models": {"cyclegan": {"domain_a": "1"}}}}).study
    cy = st.model_for("cyclegan")
    assert cy.g_channels == 32 and cy.n_res_blocks == 6 and cy.domain_a == "1"
    assert isinstance(st.model_for("cgan"), CGANConfig)
    assert st.model_for("diffusion").kind == "diffusion"
    with pytest.raises(ConfigError, match=r"study.arms: unknown synthetic arm 'vae'; choose from"):
        config_from_dict({**tiny_config(), "study": {"arms": ["real", "vae"]}})
    with pytest.raises(ConfigError, match=r"study.steps: 'gan' is not a synthesizer kind"):
        config_from_dict({**tiny_config(), "study": {"steps": {"gan": 3}}})
    st = config_from_dict(
        {**tiny_config(), "study": {"arms": ["real", "diffusion+classical"], "steps": {"diffusion": 9}}}
    ).study
    assert st.arms == ["real", "diffusion+classical"] and st.steps == {"diffusion": 9}


def test_older_study_configs_still_load() -> None:
    """``study.<kind>`` and ``study.<kind>_steps`` (before issue 25) move to ``study.models`` / ``study.steps``."""
    old = {**tiny_config(), "study": {"cyclegan": {"domain_a": 1}, "cgan_steps": 7, "cyclegan_steps": None}}
    st = config_from_dict(old).study
    assert st.model_for("cyclegan").domain_a == 1 and st.model_for("cyclegan").g_channels == 32
    assert st.steps == {"cgan": 7}
    both = {**tiny_config(), "study": {"cgan_steps": 7, "steps": {"cgan": 8}}}
    with pytest.raises(
        ConfigError, match=r"study.cgan_steps: given twice: write it once, as study.steps.cgan"
    ):
        config_from_dict(both)


def test_a_lever_without_arms_varies_the_runs_own_kind() -> None:
    raw = {
        **tiny_config(),
        "model": dict(TINY_DIFFUSION),
        "study": {"levers": [{"name": "w", "synthetic_weight": 0.5}]},
    }
    assert config_from_dict(raw).study.levers[0].arms == ["diffusion"]
    raw["study"]["levers"][0]["arms"] = ["cgan+classical"]
    assert config_from_dict(raw).study.levers[0].arms == ["cgan+classical"]


# ---------------------------------------------------------------- the commands dispatch by the checkpoint's kind


@pytest.fixture(scope="module")
def named_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with an image folder whose classes have names ("healthy", "lesion")."""
    root = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        for i in range(n):
            lab = ("healthy", "lesion")[i % 2]
            img = (rng.random((16, 16)) * (80 if lab == "healthy" else 230)).astype(np.uint8)
            Image.fromarray(img).save(root / f"{split}-{i}.png")
            rows.append(f"{split}-{i}.png,{lab},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _cyclegan_run_cfg(data: Path, features: str) -> dict:
    return {
        "name": "tiny-cycle",
        "data": {"source": {"kind": "images", "labels_csv": str(data / "labels.csv")}},
        "model": {
            "kind": "cyclegan",
            "domain_a": "healthy",
            "domain_b": "lesion",
            "g_channels": 8,
            "n_res_blocks": 1,
            "d_channels": 8,
            "pool_size": 2,
        },
        "train": {"steps": 2, "batch_size": 4, "sample_every": 2, "checkpoint_every": 2},
        "classifier": {"epochs": 1, "width": 4, "patience": 1, "batch_size": 16},
        "study": {
            "arms": ["real", "cyclegan", "cgan"],
            "ratios": [1.0],
            "seeds": 1,
            "n_boot": 20,
            "models": {"cgan": {"g_channels": 16, "d_channels": 8, "z_dim": 8, "embed_dim": 4}},
            "steps": {"cgan": 2},
        },
        "pipeline": {"features": features},
        "gates": {  # one gate on: every synthesizer of the run is gated and shown
            "fid_ratio_max": 1e6,
            "recall_min": None,
            "precision_min": None,
            "ms_ssim_max": None,
            "label_agreement_margin": None,
            "cas_auc_min": None,
            "memorized_max": None,
        },
    }


@pytest.fixture(scope="module")
def cyclegan_run(named_data: Path, pool_features: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``medgan run`` on a CycleGAN config whose domains are class names (it crashed on 'z_dim')."""
    d = tmp_path_factory.mktemp("cyclerun")
    (d / "cfg.yaml").write_text(yaml.safe_dump(_cyclegan_run_cfg(named_data, pool_features)))
    assert main(["run", str(d / "cfg.yaml"), "--out", str(d / "out"), "--data-dir", str(named_data)]) == 0
    return d / "out"


def test_medgan_run_on_a_cyclegan_config(cyclegan_run: Path) -> None:
    meta = checkpoint_meta(cyclegan_run / "cyclegan" / "checkpoints" / "step-0000002.safetensors")
    assert meta.kind == "cyclegan" and meta.domains is not None and meta.domains["a"] == "healthy"
    for direction, (src, dst) in (("A2B", ("healthy", "lesion")), ("B2A", ("lesion", "healthy"))):
        m = json.loads((cyclegan_run / "translations" / direction / "metrics.json").read_text())
        assert (m["source_domain"], m["target_domain"], m["n_written"]) == (src, dst, 4)  # 4 test slices each
        assert m["quality"]["fid"] is not None and m["quality"]["floor_fid"] is not None
    study = json.loads((cyclegan_run / "study" / "study.json").read_text())
    assert {r["arm"] for r in study["summary"]} == {"real", "cyclegan", "cgan"}
    # the study's CycleGAN arm reuses the run's own CycleGAN (class-name domains; int() crashed on them)
    assert not (cyclegan_run / "study" / "synthesizers" / "cyclegan-f1").exists()
    assert (cyclegan_run / "study" / "synthesizers" / "cgan-f1").is_dir()  # the cgan arm: study.cgan
    md = (cyclegan_run / "report.md").read_text()
    assert "## Translations" in md and "| A2B | healthy -> lesion | 4 |" in md
    # the run's own CycleGAN is gated (by the study: translations of the validation split) and shown
    gates = md[md.index("## Quality gates") : md.index("## Translations")]
    assert "| cyclegan-f1 (study synthesizer, validation split) | FID / real-real floor |" in gates
    assert "| cgan-f1 (study synthesizer, validation split) | FID / real-real floor |" in gates
    assert "## Does synthetic data help the classifier?" in md and "## Synthetic data quality" not in md


def test_generate_follows_the_checkpoint_not_the_flags(
    cyclegan_run: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = cyclegan_run / "cyclegan"
    code = main(["generate", "--checkpoint", str(ckpt), "--n-per-class", "2", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "model.kind: 'cyclegan'" in err and "--translate" in err and not (tmp_path / "a").exists()
    code = main(
        [
            "generate",
            "--checkpoint",
            str(tiny_checkpoint),
            "--translate",
            "A2B",
            "--input",
            "x",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model.kind: 'cgan' is a class-conditional GAN" in err and "cyclegan" in err
    assert not (tmp_path / "b").exists()


def test_study_cyclegan_arm_in_a_cgan_run_takes_class_names(
    named_data: Path, tmp_path: Path, pool_features: str
) -> None:
    from medgan.study import run_study

    raw = _cyclegan_run_cfg(named_data, pool_features)
    raw["model"] = {"g_channels": 16, "d_channels": 8, "z_dim": 8, "embed_dim": 4}  # a cGAN run
    raw["study"] = {
        "arms": ["real", "cyclegan"],
        "ratios": [1.0],
        "seeds": 1,
        "n_boot": 20,
        "steps": {"cyclegan": 2},
        "models": {
            "cyclegan": {
                "domain_a": "lesion",
                "domain_b": "healthy",
                "g_channels": 8,
                "n_res_blocks": 1,
                "d_channels": 8,
            }
        },
    }
    rep = run_study(config_from_dict(raw), named_data, tmp_path)
    assert [r["arm"] for r in rep["summary"]] == ["real", "cyclegan"]
    meta = checkpoint_meta(
        tmp_path / "synthesizers" / "cyclegan-f1" / "checkpoints" / "step-0000002.safetensors"
    )
    assert meta.domains == {"mode": "labels", "a": "lesion", "b": "healthy", "label_a": 1, "label_b": 0}
    raw["study"]["models"]["cyclegan"]["domain_a"] = "tumour"
    with pytest.raises(
        ConfigError, match=r"study.models.cyclegan.domain_a: 'tumour' is not one of the data's classes"
    ):
        run_study(config_from_dict(raw), named_data, tmp_path / "again")
