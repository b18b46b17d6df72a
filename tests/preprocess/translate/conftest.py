"""Tiny real-format translation models, built once per test session from benchmark captions.

Every test here also runs with outgoing connections refused, so a code path that would try
the model hub fails loudly instead of passing on a machine that happens to be online.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dist_train.data.world.dataset import World, get_spec


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Record and refuse every outgoing connection attempt; yields the list of attempts."""
    attempts: list = []

    def refuse(sock, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access attempted in a test: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts


@pytest.fixture(scope="session")
def world() -> World:
    return World.generate(get_spec("tiny"))


@pytest.fixture(scope="session")
def corpus(world) -> dict[str, list[str]]:
    """Training and validation captions by language: what the tiny tokenizers learn from."""
    by_language: dict[str, list[str]] = {}
    for split in ("train", "val"):
        for caption in world.captions[split]:
            by_language.setdefault(caption.language, []).append(caption.caption)
    return by_language


@pytest.fixture(scope="session")
def english(world) -> list[str]:
    """54 English captions of different lengths (test split first): the texts to translate."""
    return [c.caption for split in ("test", "val") for c in world.captions[split] if c.language == "en"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def marian_en_de(models_dir, corpus) -> Path:
    from dist_train.preprocess.translate import build_tiny_marian

    return build_tiny_marian(models_dir / "opus-mt-en-de", corpus["en"], corpus["de"],
                             source_lang="en", target_lang="de", seed=0)


@pytest.fixture(scope="session")
def marian_en_fr(models_dir, corpus) -> Path:
    from dist_train.preprocess.translate import build_tiny_marian

    return build_tiny_marian(models_dir / "opus-mt-en-fr", corpus["en"], corpus["fr"],
                             source_lang="en", target_lang="fr", seed=1)


@pytest.fixture(scope="session")
def nllb(models_dir, corpus) -> Path:
    from dist_train.preprocess.translate import build_tiny_nllb

    return build_tiny_nllb(models_dir / "nllb-tiny", {lang: corpus[lang] for lang in ("en", "de", "fr", "ru")})


@pytest.fixture(scope="session")
def converted(tmp_path_factory, marian_en_de, nllb) -> dict[str, Path]:
    """The tiny models converted for CTranslate2, in fp32 and int8."""
    from dist_train.preprocess.translate import convert_model

    out = tmp_path_factory.mktemp("ct2")
    return {
        "marian": convert_model(marian_en_de, out / "opus-mt-en-de"),
        "marian-int8": convert_model(marian_en_de, out / "opus-mt-en-de-int8", quantization="int8"),
        "nllb": convert_model(nllb, out / "nllb-tiny"),
        "nllb-int8": convert_model(nllb, out / "nllb-tiny-int8", quantization="int8"),
    }
