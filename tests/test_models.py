"""Every `--model` form loads from a stand-in through the code path users take for the real files."""

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from taxoclip.errors import MissingFilesError, TaxoclipError
from taxoclip.models import layout, load_model, parse_model_spec, resolve_model
from taxoclip.models.checkpoint import load_train_state, save_checkpoint
from taxoclip.models.standin import TINY_MODEL_CFG
from taxoclip.models.tol import read_tol_embeddings, read_tol_names


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    """Register the stand-in's config as an open_clip architecture, for the ARCH:WEIGHTS forms."""
    import open_clip

    configs = tmp_path_factory.mktemp("arch")
    (configs / "taxoclip-tiny.json").write_text(json.dumps(TINY_MODEL_CFG))
    open_clip.add_model_config(configs)
    return "taxoclip-tiny"


def image_features(loaded, seed=0):
    torch.manual_seed(seed)
    with torch.inference_mode():
        return loaded.model.encode_image(torch.rand(2, 3, 224, 224))


def test_spec_syntax():
    assert parse_model_spec("bioclip").kind == "named"
    assert parse_model_spec("bioclip-2@abc123").revision == "abc123"
    spec = parse_model_spec("hf-hub:imageomics/bioclip@v1")
    assert (spec.kind, spec.name, spec.revision) == ("hf-hub", "imageomics/bioclip", "v1")
    assert parse_model_spec("ViT-B-16:openai").pretrained == "openai"
    assert parse_model_spec("ViT-B-16").kind == "open_clip"
    with pytest.raises(TaxoclipError, match="no such file"):
        parse_model_spec("./missing/dir")
    with pytest.raises(TaxoclipError, match="hf-hub:org/name"):
        parse_model_spec("hf-hub:bioclip")


def test_named_model_from_the_hub_cache_with_its_tree_of_life_bank(offline_hub, standin_dir):
    loaded = load_model("bioclip")
    identity = loaded.identity
    assert identity.source == "imageomics/bioclip" and len(identity.revision) == 40
    weights = standin_dir / layout.WEIGHTS_SAFETENSORS
    import hashlib

    assert identity.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert identity.label == f"imageomics/bioclip@{identity.revision[:12]}"
    tol = loaded.tol_files()
    assert tol.source == "imageomics/TreeOfLife-10M" and len(tol.revision) == 40
    emb, names = read_tol_embeddings(tol.embeddings), read_tol_names(tol.names)
    assert emb.dtype == np.float32 and emb.shape == (32, 492) and len(names) == 492
    assert json.loads(tol.names.read_text())[0] == [list(names[0].ranks), names[0].common]
    assert np.allclose(np.linalg.norm(emb, axis=0), 1, atol=1e-5)
    direct = load_model(standin_dir)
    assert torch.allclose(image_features(loaded), image_features(direct))


def test_hf_hub_spec_pinned_to_a_revision(offline_hub):
    commit = resolve_model("bioclip").identity.revision
    loaded = load_model(f"hf-hub:imageomics/bioclip-2@{commit}")
    assert loaded.identity.revision == commit and loaded.embed_dim == 32
    with pytest.raises(MissingFilesError, match="at revision 0000"):
        resolve_model("hf-hub:imageomics/bioclip@" + "0" * 40)


def test_local_directory_forms(standin_dir):
    for spec in (str(standin_dir), f"local-dir:{standin_dir}"):
        loaded = load_model(spec)
        assert loaded.identity.kind == "local-dir" and loaded.identity.label.startswith(str(standin_dir))
        assert loaded.tol_files().embeddings == standin_dir / layout.TOL_EMBEDDINGS
        assert loaded.preprocess_cfg["mean"][0] == pytest.approx(0.48145466)


def test_architecture_with_weights_file_bin_or_safetensors(tiny_arch, standin_dir, tmp_path):
    reference = image_features(load_model(standin_dir))
    bin_path = tmp_path / "weights.bin"
    torch.save(load_model(standin_dir).model.state_dict(), bin_path)
    for weights in (standin_dir / layout.WEIGHTS_SAFETENSORS, bin_path):
        loaded = load_model(f"{tiny_arch}:{weights}")
        assert loaded.identity.kind == "open_clip" and "#sha256:" in loaded.identity.label
        assert torch.allclose(image_features(loaded), reference)
    random_init = load_model(tiny_arch)
    assert random_init.identity.label == f"{tiny_arch} (random init)"
    # a bare weights file whose config sits beside it
    assert load_model(str(standin_dir / layout.WEIGHTS_SAFETENSORS)).identity.kind == "local-dir"


def test_own_checkpoints_in_the_hub_layout(standin_dir, tmp_path):
    source = load_model(standin_dir)
    run = tmp_path / "run"
    state = {"step": torch.tensor(7), "optimizer": {"lr": 0.1}}
    for name in ("step-00000005", layout.FINAL_CHECKPOINT):
        save_checkpoint(source.model, run / layout.CHECKPOINTS_DIR / name, source.model_cfg, source.preprocess_cfg,
                        meta={"step": 7, "text_types": ["sci", "taxon"]}, train_state=state)
    loaded = load_model(run)
    assert loaded.resolved.directory.name == layout.FINAL_CHECKPOINT
    assert loaded.resolved.meta["format"] == layout.CHECKPOINT_FORMAT and loaded.resolved.meta["step"] == 7
    assert torch.allclose(image_features(loaded), image_features(source))
    assert int(load_train_state(loaded.resolved.directory)["step"]) == 7
    assert not list((run / layout.CHECKPOINTS_DIR).glob(".*")), "no temporary directories left behind"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/taxoclip-pwned",))


def test_pickled_code_in_a_checkpoint_is_refused(standin_dir, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / layout.CONFIG_FILE).write_text((standin_dir / layout.CONFIG_FILE).read_text())
    with open(evil / layout.WEIGHTS_BIN, "wb") as handle:
        pickle.dump({"state_dict": Evil()}, handle)
    if os.path.exists("/tmp/taxoclip-pwned"):
        os.remove("/tmp/taxoclip-pwned")
    with pytest.raises(TaxoclipError, match="cannot load"):
        load_model(evil)
    assert not os.path.exists("/tmp/taxoclip-pwned")


def test_offline_without_files_is_one_clear_line_and_no_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code = ("import sys; from taxoclip.models import resolve_model\n"
            "from taxoclip.errors import TaxoclipError\n"
            "try:\n    resolve_model(sys.argv[1])\nexcept TaxoclipError as e:\n    print(e)\n")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    for spec, repo in (("bioclip-2", "imageomics/bioclip-2"), ("ViT-B-16:openai", "timm/vit_base_patch16_clip_224.openai")):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, env=env, timeout=120)
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1, done.stdout + done.stderr
        assert repo in lines[0] and "cannot be reached" in lines[0] and "HF_HUB_CACHE" in lines[0]
        assert "Retrying" not in done.stderr
        assert time.monotonic() - started < 60


def test_bad_specs_are_one_line_errors(tmp_path):
    with pytest.raises(TaxoclipError, match="unknown open_clip architecture"):
        resolve_model("ViT-Q-99")
    with pytest.raises(TaxoclipError, match="neither a file nor a pretrained tag"):
        resolve_model("ViT-B-16:nonsense")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaxoclipError, match="not a model directory"):
        resolve_model(str(tmp_path / "empty"))


def test_help_imports_no_heavy_library():
    code = ("import sys, taxoclip.cli as c; c.build_parser();"
            "heavy=[m for m in ('torch','open_clip','pandas','numpy','PIL') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_make_standin_cli_installs_into_a_hub_cache(tmp_path, labels):
    subset = tmp_path / "labels.csv"
    labels.head(40).to_csv(subset, index=False)
    done = subprocess.run([sys.executable, "-m", "taxoclip", "dev", "make-standin", str(tmp_path / "m"),
                           "--labels-csv", str(subset), "--hub-cache", str(tmp_path / "hub"), "--repo", "me/mine"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    snapshots = list((tmp_path / "hub" / "models--me--mine" / "snapshots").iterdir())
    assert len(snapshots) == 1 and (snapshots[0] / layout.CONFIG_FILE).is_symlink()
    names = read_tol_names(tmp_path / "m" / layout.TOL_NAMES)
    assert 1 <= len(names) <= 40 and all(t.complete for t in names)
