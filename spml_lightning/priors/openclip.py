"""The open_clip prior: CLIP's cosine similarity between each image view and each class prompt.

``pip install "spml_lightning[clip]"``. Any model open_clip knows (``model``: ``ViT-B-16``,
``ViT-L-14-336``, ...; ``open_clip.list_pretrained()``), with ``pretrained`` a tag open_clip
downloads (``openai``, ``laion2b_s34b_b88k``, ...) or a local weights file; or, with
``model_config``, a model described by an open_clip JSON config file. Class prompts are
made from the data set's class names with ``templates`` (``{}`` stands for the name,
underscores read as spaces) and averaged per class (CLIP's prompt ensembling). The scores
are cosine similarities in [-1, 1]: the policies soften them with ``softmax(· / 0.01)``,
CLIP's logit scale (``prior_policy.temperature``).

Offline: with ``pretrained`` a local file nothing is downloaded; with a tag, open_clip
reads ``weights_cache_dir`` (or its default cache) before it downloads, and
``HF_HUB_OFFLINE=1`` forbids the download (docs/guides/priors.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import torch

from spml_lightning.features.fingerprint import weights_digest
from spml_lightning.priors.provider import ClassScorer, PriorProvider

__all__ = ["DEFAULT_TEMPLATES", "OpenCLIPPrior"]

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
"""CLIP's basic prompt, the one AEVLP's released settings build (VLPL's was not established)."""

_INSTALL = 'the open_clip prior needs open_clip: pip install "spml_lightning[clip]"'


def _open_clip() -> Any:
    try:
        return importlib.import_module("open_clip")
    except ImportError as error:
        raise ImportError(f"{_INSTALL} ({error}).") from error


class OpenCLIPPrior(PriorProvider):
    """Scores from an open_clip model (``data.init_args.prior.class_path: ...OpenCLIPPrior``).

    Args:
        model: an open_clip model name (``ViT-B-16``: AEVLP's; ``ViT-L-14-336``: VLPL's).
        pretrained: an open_clip pretrained tag (``openai``), a local weights file, or None
            (or ``none``, as ``model.weights``): random weights (tests only: the scores
            mean nothing).
        model_config: a JSON file describing a model open_clip does not list (its name is
            then the file's stem, and ``model`` must equal it).
        templates: prompt templates, ``{}`` standing for the class name.
        weights_cache_dir: where open_clip keeps downloaded weights (default: its own).
        seed: the seed of random weights (``pretrained`` None), so that they fingerprint alike.
        grid: see ``PriorProvider`` (AEVLP: 4; CUB 5).
        flip: see ``PriorProvider``.
        cache_dir: see ``PriorProvider``.
        batch_size: see ``PriorProvider``.
        device: see ``PriorProvider``.
        progress: see ``PriorProvider``.
    """

    def __init__(
        self,
        model: str = "ViT-B-16",
        pretrained: str | None = "openai",
        model_config: str | None = None,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        weights_cache_dir: str | None = None,
        seed: int = 0,
        grid: int = 4,
        flip: bool = True,
        cache_dir: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(grid, flip, cache_dir, batch_size, device, progress)
        templates = list(templates)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(
                f"templates must be prompts holding '{{}}' where the class name goes, got "
                f"{templates!r}."
            )
        self.model = model
        # "none" as model.weights says it; a command line's null can arrive as "None" too.
        none = pretrained is None or str(pretrained).lower() in ("none", "null")
        self.pretrained = None if none else pretrained
        self.model_config = model_config
        self.templates = templates
        self.weights_cache_dir = weights_cache_dir
        self.seed = seed

    @property
    def name(self) -> str:
        """``<model>-<pretrained tag or file name>``."""
        weights = self.pretrained or "random"
        return f"{self.model}-{weights.replace('/', '-')}"

    def identity(self) -> dict[str, Any]:
        """The model, its weights' source, the config file, the templates (and the seed)."""
        return {
            "model": self.model,
            "pretrained": self.pretrained,
            "model_config": self.model_config,
            "templates": self.templates,
            "seed": self.seed if self.pretrained is None else None,
        }

    def load(self, class_names: Sequence[str], device: torch.device) -> ClassScorer:
        """Build the model, embed the class prompts, and return the scorer of image views."""
        open_clip = _open_clip()
        if self.model_config is not None:
            open_clip.add_model_config(self.model_config)
        # The same random weights run after run, drawn from a forked generator: the
        # training's own random stream (seed_everything's) goes on untouched.
        with torch.random.fork_rng(devices=[]):
            if self.pretrained is None:
                torch.manual_seed(self.seed)
            try:
                model = open_clip.create_model(
                    self.model,
                    pretrained=self.pretrained,
                    device=device,
                    cache_dir=self.weights_cache_dir,
                )
            except RuntimeError as error:
                raise RuntimeError(
                    f"open_clip cannot build {self.model!r} with pretrained={self.pretrained!r} "
                    f"({error}). Pass a model of open_clip.list_models() (or model_config) and "
                    "a tag of open_clip.list_pretrained() or a local weights file."
                ) from error
        model.eval()
        tokenizer = open_clip.get_tokenizer(self.model)
        with torch.no_grad():
            text = []
            for name in class_names:
                prompts = [t.format(str(name).replace("_", " ")) for t in self.templates]
                embedded = model.encode_text(tokenizer(prompts).to(device)).float()
                mean = torch.nn.functional.normalize(embedded, dim=-1).mean(dim=0)
                text.append(torch.nn.functional.normalize(mean, dim=0))
            class_embeddings = torch.stack(text)

        def score(images: torch.Tensor) -> torch.Tensor:
            embedded = model.encode_image(images).float()
            return torch.nn.functional.normalize(embedded, dim=-1) @ class_embeddings.T

        preprocess = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = preprocess.get("size", model.visual.image_size)
        size = size[0] if isinstance(size, (tuple, list)) else size
        return ClassScorer(
            score=score,
            image_size=int(size),
            mean=tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            std=tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
            weights=weights_digest(model),
            device=device,
        )
