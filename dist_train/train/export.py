"""`dist-train export`: fp32 weights of a DeepSpeed checkpoint as safetensors, plus the model config,
loadable without DeepSpeed for evaluation and inference."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from dist_train.storage import location

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export that would overwrite something it was not asked to; one line naming the folder."""


IMAGE_PREFIX = "image_encoder."
IMAGE_ENCODER_FILE = "image_encoder.safetensors"


EXPORT_FILES = ("model.safetensors", IMAGE_ENCODER_FILE, "spm.model", "config.yaml")


def export(checkpoints: str | Path, out: str | Path, tag: str | None = None, force: bool = False,
           use_previous: str | None = None) -> Path:
    """Write checkpoint `tag` (default: the latest) of a run as OUT/model.safetensors, config.yaml and the
    vocabulary it was trained with. A non-empty OUT is refused unless `force` (then the export's files
    in it are replaced), before anything is read or written. `use_previous`: how the message about a
    truncated checkpoint says to use the previous complete one (`{tag}` in it; default: `--tag {tag}`)."""
    import os

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from dist_train.train.checkpoint import EXPORT_OPTION, check_complete, checkpoint_folder, deepspeed_loads, latest_tag
    from dist_train.train.engine import vocab_sha256

    checkpoints, out = Path(checkpoints), Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; export writes a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; pass --force to replace the export in it, or give an empty folder")
    if tag is not None:
        checkpoint_folder(checkpoints, tag, source="--tag")  # a step folder directly inside, never ../x
    tag = tag or latest_tag(checkpoints)
    if tag is None:
        raise FileNotFoundError(f"no complete checkpoint under {checkpoints} (no 'latest' pointer)")
    check_complete(checkpoints, tag, use_previous or EXPORT_OPTION)
    run_config, model_config = checkpoints.parent / "config.yaml", checkpoints.parent / "model.yaml"
    for path in (run_config, model_config):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: export reads the run's files next to checkpoints/")
    run = yaml.safe_load(run_config.read_text())
    model = yaml.safe_load(model_config.read_text())
    with deepspeed_loads():  # weights_only=True for every file it reads: loading never runs code from them
        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoints), tag=tag)
    tensors = export_tensors(state)
    out.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES if force else ():
        (out / name).unlink(missing_ok=True)
    write_weights(tensors, out / "model.safetensors", str(checkpoints / tag))
    # The image network alone (its own key names), to initialise another model's image network from it
    # (`model_config.image_weights`), e.g. a Globetrotter run's for another run or a feature extractor.
    image = {name[len(IMAGE_PREFIX):]: t for name, t in tensors.items() if name.startswith(IMAGE_PREFIX)}
    if image:
        write_weights(image, out / IMAGE_ENCODER_FILE, str(checkpoints / tag),
                      arch=str(model["config"].get("image_arch", "resnet18")))
    # the vocabulary the run was trained with (model.yaml records its hash): the run folder's copy, else the
    # dataset's, unless that dataset was preprocessed again since with another one
    trained_with = model.get("vocab_sha256")
    looked = []
    for vocab in (checkpoints.parent / "spm.model", location(run["data"]["shards"]) / "spm.model"):
        found = vocab_sha256(vocab)
        if found is not None and (trained_with is None or found == trained_with):
            (out / "spm.model").write_bytes(vocab.read_bytes())
            break
        looked.append(f"{vocab} ({'not there' if found is None else f'sha256 {found[:12]}, not {trained_with[:12]}'})")
    else:
        raise FileNotFoundError(f"no vocabulary of the run to export beside the weights: looked for {' and '.join(looked)}")
    config = export_config(model, run, str(checkpoints / tag), trained_with or found)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def export_tensors(state: dict) -> dict:
    """A state dict as an export stores it: fp32, contiguous, each tied tensor once (safetensors refuses
    two names for one memory; loading restores the tie from the model)."""
    seen: dict[int, str] = {}
    tensors = {}
    for name, tensor in state.items():
        ptr = tensor.data_ptr()
        if ptr in seen and tensor.numel():
            continue
        seen[ptr] = name
        tensors[name] = tensor.detach().cpu().contiguous().float()
    return tensors


def write_weights(tensors: dict, path: Path, source: str, **metadata: str) -> None:
    """`tensors` as a safetensors file at `path`, replaced atomically (a crash leaves the old file whole)."""
    from safetensors.torch import save_file

    tmp = Path(path).with_name(Path(path).name + ".tmp")
    save_file(tensors, str(tmp), metadata={"checkpoint": source, **metadata})
    tmp.replace(path)


def export_config(model: dict, run: dict, source: str, vocab_sha256: str | None) -> dict:
    """An export's config.yaml: the model (model.yaml's name and config), the run settings evaluation reads,
    where the weights came from and the vocabulary's hash."""
    return {"model": model["model"], "model_config": model["config"], "objective": run.get("objective", {}),
            "data": {"max_tokens": run["data"]["max_tokens"], "image_size": run["data"]["image_size"]},
            "checkpoint": source, "vocab": "spm.model", "vocab_sha256": vocab_sha256}


def load_exported(path: str | Path):
    """The model of an export folder, in eval mode, without DeepSpeed."""
    from safetensors.torch import load_file

    from dist_train.models.registry import build_model

    from dist_train.train.engine import vocab_sha256

    path = Path(path)
    config = yaml.safe_load((path / "config.yaml").read_text())
    if not config.get("vocab_sha256"):  # exports written before the hash was recorded
        config["vocab_sha256"] = vocab_sha256(path / "spm.model")
    model = build_model(config["model"], config["model_config"])
    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
        name for name, p in model.named_parameters()}
    if unexpected or set(missing) - tied:
        raise ValueError(f"{path}: weights do not fit the model: missing {sorted(set(missing) - tied)}, "
                         f"unexpected {sorted(unexpected)}")
    return model.eval(), config


def model_name(checkpoint: str | Path) -> str | None:
    """The registered model name a checkpoint or export holds (from its config, without loading weights);
    None when the folder says nothing about it (load_model then names the problem)."""
    path = Path(checkpoint)
    for candidate in (path / "config.yaml", path / "model.yaml", path.parent / "model.yaml",
                      path.parent.parent / "model.yaml"):
        if candidate.is_file() and (candidate.name == "model.yaml" or (path / "model.safetensors").is_file()):
            try:
                found = (yaml.safe_load(candidate.read_text()) or {}).get("model")
            except (yaml.YAMLError, OSError, UnicodeDecodeError, AttributeError):
                return None
            return found if isinstance(found, str) else None
    return None


def run_objective(checkpoint: str | Path) -> dict:
    """The `objective` settings a checkpoint's run (or an export) was trained with, {} when not recorded."""
    path = Path(checkpoint)
    for candidate in (path / "config.yaml", path.parent / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            try:
                found = (yaml.safe_load(candidate.read_text()) or {}).get("objective")
            except (yaml.YAMLError, OSError, UnicodeDecodeError, AttributeError):
                return {}
            return dict(found) if isinstance(found, dict) else {}
    return {}


def load_model(checkpoint: str | Path):
    """(model in eval mode, run config) from an exported folder (model.safetensors + config.yaml), a run's
    DeepSpeed checkpoints folder (its latest checkpoint), one step folder of it, or the run folder."""
    path = Path(checkpoint)
    if (path / "checkpoints" / "latest").is_file() and not (path / "model.safetensors").is_file():
        path = path / "checkpoints"
    if (path / "model.safetensors").is_file():
        return load_exported(path)
    if (path / "latest").is_file() or path.name.startswith("step"):
        import os
        import tempfile

        os.environ.setdefault("DS_ACCELERATOR", "cpu")

        checkpoints, tag = (path, None) if (path / "latest").is_file() else (path.parent, path.name)
        import contextlib
        import sys

        with tempfile.TemporaryDirectory() as tmp:
            with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed's converter prints; stdout is the command's
                export(checkpoints, tmp, tag=tag, use_previous=f"use it with --checkpoint {checkpoints}/{{tag}}")
            return load_exported(tmp)
    raise FileNotFoundError(f"{path} is neither an exported model (model.safetensors) nor a checkpoints folder "
                            "(with a 'latest' pointer)")
