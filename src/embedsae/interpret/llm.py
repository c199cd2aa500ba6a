"""The LLM labeller and detection scorer, over an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM,
Ollama, llama.cpp server) or a local model run in-process with `transformers` (`llm_local`).

Both backends are chat clients with one interface (`complete_many` for answers, `rate_many` for yes/no
ratings, `llm_client`): the labeller and the scorer do not know which one answers. Answers are cached by a hash
of the request in the feature store, so a repeated run asks nothing twice. Prompts and parsers come in two profiles (`llm_prompts`): "full" for capable models, "small" for
small local ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback
from .llm_client import CachingClient, ChatClient, LLMConfig, LLMEndpointError, Profile
from .llm_prompts import (
    MalformedAnswer,
    detection_prompt,
    label_prompt,
    parse_label,
    parse_name_description,
    parse_ratings,
    parse_small_description,
    parse_small_label,
    parse_small_rating,
    small_description_prompt,
    small_detection_prompt,
    small_label_prompt,
)
from .scorers import f1_score, pearson

__all__ = ["LLMConfig", "ChatClient", "LLMEndpointError", "MalformedAnswer", "LLMLabeller", "make_chat_client",
           "llm_detection", "label_prompt", "parse_label", "parse_name_description", "detection_prompt",
           "parse_ratings", "parse_small_label", "parse_small_description", "parse_small_rating"]


def make_chat_client(cfg: LLMConfig, store: object | None = None,
                     progress: ProgressCallback | None = None) -> CachingClient:
    """The chat client of a config: an endpoint's, or a local model's (loaded on `check()` or first use)."""
    if cfg.local:
        from .llm_local import LocalChatClient

        return LocalChatClient(cfg, store, progress)
    return ChatClient(cfg, store, progress)


def detection_documents(ex, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out documents for detection (up to n activating across quantiles, n random negatives), shuffled;
    returns (doc rows, true activations with 0 for negatives)."""
    pos = np.arange(len(ex.heldout_pos))
    if len(pos) > n:
        pos = np.unique(np.linspace(0, len(pos) - 1, n).round().astype(int))
    docs = np.concatenate([ex.heldout_pos[pos], ex.heldout_neg[:n]])
    acts = np.concatenate([ex.heldout_pos_act[pos], np.zeros(min(n, len(ex.heldout_neg)))])
    order = np.random.default_rng([seed, ex.feature, 2]).permutation(len(docs))
    return docs[order], acts[order]


def detection_scores(ratings: np.ndarray, acts: np.ndarray) -> dict[str, float | None]:
    """Pearson r between ratings and activations, and F1 of 'rating >= 5' as a detector of firing."""
    _, _, f1 = f1_score(ratings >= 5, acts > 0)
    return {"llm_pearson": pearson(ratings, acts), "llm_f1": f1}


# ---------------------------------------------------------------------------- labeller and scorer of a run
class LLMLabeller:
    """The LLM labeller: a name and a description per feature. The full profile asks for both in one prompt
    with the feature's top documents and, for contrast, the nearest documents it does not fire on; the small
    profile asks for the name, then for one sentence about the texts given that name."""

    def __init__(self, client: CachingClient) -> None:
        self.client = client
        self.name = f"llm:{client.cfg.name}"
        self.version = "2"  # a name and a description (1: a name alone)

    def label_batch(self, examples: Sequence, context) -> list:
        """Labels of a batch; failures of single features are recorded, a model failure stops the run
        (`LabellingStopped`) after the features that did get an answer."""
        from .labellers import Label, LabellingStopped

        p, texts = self.client.cfg.settings(), context.texts
        tops = [[texts[d] for d in ex.top[: p.n_examples]] for ex in examples]
        if p.small:
            prompts = [small_label_prompt(top, p.chars) for top in tops]
        else:
            prompts = [label_prompt(top, ex.top_act[: p.n_examples], [texts[d] for d in ex.hard_neg[: p.n_negatives]],
                                    p.chars) for ex, top in zip(examples, tops)]
        parse = parse_small_label if p.small else parse_name_description
        made: list = []
        error = None
        for ans in self.client.complete_many(prompts, validate=parse, max_tokens=p.label_tokens):
            if isinstance(ans, LLMEndpointError):
                error = error or ans
                made.append(None)  # not attempted to the end: left for the next run
            elif isinstance(ans, MalformedAnswer):
                made.append(Label(None, None, {"error": f"malformed answer: {ans}"}))
            elif isinstance(ans, Exception):
                made.append(Label(None, None, {"error": str(ans)}))
            elif p.small:
                made.append(Label(parse_small_label(ans), None, {"answer": ans[-2000:]}))
            else:
                name, desc = parse_name_description(ans)  # validated: parses
                made.append(Label(name, desc, {"answer": ans[-2000:]}))
        if p.small and error is None:
            error = self._describe_small(made, tops, p)
        if error is not None:
            raise LabellingStopped(made, error)
        return made

    def _describe_small(self, made: list, tops: list[list[str]], p: Profile) -> Exception | None:
        """The small profile's descriptions: one more prompt per named feature; returns a model failure."""
        todo = [i for i, lab in enumerate(made) if lab is not None and lab.name]
        prompts = [small_description_prompt(made[i].name, tops[i], p.chars) for i in todo]
        answers = self.client.complete_many(prompts, validate=_has_description, max_tokens=p.description_tokens)
        for i, ans in zip(todo, answers):
            if isinstance(ans, LLMEndpointError):
                made[i] = None  # the whole feature is asked again next run
                return ans
            if isinstance(ans, str):
                made[i].description = parse_small_description(ans)
                made[i].detail["description_answer"] = ans[-2000:]
        return None


def _has_description(answer: str) -> None:
    if parse_small_description(answer) is None:
        raise MalformedAnswer("no sentence in the answer")


def make_llm_labeller(context) -> LLMLabeller:
    """The registered factory of the "llm" labeller."""
    if context.chat is None:
        raise InputError("the LLM labeller needs a model: give an LLMConfig with the base_url and model of an "
                         "OpenAI-compatible chat API, or the path of a local model")
    return LLMLabeller(context.chat)


def llm_detection(client: CachingClient, cfg: LLMConfig, exs: Sequence, labels: dict, texts: Sequence[str]
                  ) -> tuple[dict[int, dict], Exception | None]:
    """LLM detection scores (Pearson, F1) for labelled features of a batch, and the model error that stopped
    it, if any. The full profile rates a feature's documents in one prompt, the small one each in its own."""
    p = cfg.settings()
    docs = [detection_documents(ex, p.n_detect) for ex in exs]
    if p.small:
        prompts = [small_detection_prompt(labels[ex.feature][0], texts[d], p.chars) for ex, (d_, _) in zip(exs, docs)
                   for d in d_]
        answers = client.rate_many(prompts)
        bounds = np.cumsum([0] + [len(d_) for d_, _ in docs])
        per_feature = [answers[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        prompts = [detection_prompt(labels[ex.feature][0], [texts[d] for d in d_], p.chars)
                   for ex, (d_, _) in zip(exs, docs)]
        per_feature = [[a] for a in client.complete_many(prompts, validate=lambda a: parse_ratings(a, 1),
                                                          max_tokens=p.detect_tokens)]
    out: dict[int, dict] = {}
    error = None
    for ex, (d_, acts), got in zip(exs, docs, per_feature):
        stop = next((a for a in got if isinstance(a, LLMEndpointError)), None)
        if stop is not None:
            error = error or stop
            continue
        if any(isinstance(a, Exception) for a in got):
            continue
        try:
            ratings = np.asarray(got, dtype=float) if p.small else parse_ratings(got[0], len(d_))
        except MalformedAnswer:
            continue
        out[ex.feature] = detection_scores(ratings, acts)
    return out, error
