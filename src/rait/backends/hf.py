"""The Hugging Face backend: batched scoring and sampling with a shared-prefix KV cache.

Two operations serve the probe and the evaluation:

* :meth:`HFEngine.next_token_logprobs` -- one forward pass per prompt, the log-softmax of the
  next token at the answer position (MCQA option letters);
* :meth:`HFEngine.sample` -- ``n`` continuations per prompt, greedy or at a temperature, each
  stopped at the end of its first non-empty line (or EOS), with every token's log-probability
  (and, on request, the log-probabilities of chosen candidates at the first step: the option
  letters of an MCQA answer);
* :meth:`HFEngine.continuation_logprobs` -- the log-probability of given continuations of each
  prompt (R-Tuning's "I am sure" / "I am unsure").

Speed without approximation:

* **Shared prefix.** Prompts that start with the same tokens (the few-shot examples of one
  subject or relation, the chat template's system turn) have that prefix's keys and values
  computed once; each batch continues from a copy. The most recent prefix is memoised, so
  consecutive calls of one group reuse it.
* **Prompt encoded once for n samples.** Each prompt is prefilled once; its cache and last
  logits are then repeated ``n`` times for sampling (``generate(num_return_sequences=n)``
  encodes the prompt ``n`` times).
* **Early stop.** A row leaves the batch (and the cache) as soon as its first line is finished.

Sampling draws every row's tokens from its own ``torch.Generator`` seeded with the row's seed,
so a sample does not depend on which other prompts share its batch (resumed runs draw the same
samples; tiny float differences from batch shapes can still flip a near-tie).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from rait.engine import Completion
from rait.errors import ModelError
from rait.generation import check_context, context_limit
from rait.models import LoadedModel

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate cache


def token_holds_newline(tokenizer: Any, cache: dict[int, bool], token_id: int) -> bool:
    """Whether ``token_id`` decodes to text holding a newline (memoised in ``cache``); both
    backends cut answers with it."""
    known = cache.get(token_id)
    if known is None:
        known = "\n" in tokenizer.decode([token_id])
        cache[token_id] = known
    return known


def ends_first_line(tokenizer: Any, tokens: Sequence[int]) -> bool:
    """Whether the generated ``tokens`` end the first non-empty line: their text has a newline
    after non-white-space text (leading blank lines do not end it). Both backends cut here."""
    return "\n" in tokenizer.decode(list(tokens), skip_special_tokens=True).lstrip()


def common_prefix_length(token_lists: Sequence[Sequence[int]]) -> int:
    first = token_lists[0]
    limit = min(len(t) for t in token_lists)
    for i in range(limit):
        token = first[i]
        if any(t[i] != token for t in token_lists):
            return i
    return limit


class HFEngine:
    """Scoring and sampling with a Hugging Face causal LM (see the module docstring)."""

    name = "hf"

    @property
    def chat(self) -> bool:
        """Whether prompts go through the tokenizer's chat template."""
        return self.lm.use_chat_template

    def __init__(self, lm: LoadedModel, batch_size: int = 8):
        import torch

        if batch_size <= 0:
            raise ModelError(f"batch_size must be positive, got {batch_size}")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.batch_size = batch_size
        self.device = lm.model.device
        self._torch = torch
        self._prefix: tuple[tuple[int, ...], Any] | None = None
        self._newline_token: dict[int, bool] = {}
        eos: set[int] = set()
        for source in (self.tokenizer.eos_token_id, self.model.generation_config.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, (list, tuple)):
                eos.update(int(x) for x in source)
        self.eos_ids = eos
        self.limit = context_limit(self.model)

    # ------------------------------------------------------------------ tokens
    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def check_length(self, key: str, n_tokens: int, new_tokens: int) -> None:
        check_context(self.lm.name, key, n_tokens, new_tokens, self.limit)

    def _ends_line(self, token_id: int) -> bool:
        return token_holds_newline(self.tokenizer, self._newline_token, token_id)

    # ------------------------------------------------------------------ prefill
    def set_shared_prefix(self, tokens: Sequence[int]) -> None:
        """Compute the cache of ``tokens`` now; later batches whose prompts all start with
        them continue from it. Callers that know a whole group of prompts (not just one batch)
        set the group's common prefix, so results do not depend on how batches are cut."""
        torch = self._torch
        if len(tokens) < MIN_SHARED_PREFIX:
            self._prefix = None
            return
        if self._prefix is not None and self._prefix[0] == tuple(tokens):
            return
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        self._prefix = (tuple(tokens), out.past_key_values)

    def _prefix_cache(self, token_lists: Sequence[Sequence[int]], keep: int = 1) -> tuple[int, Any]:
        """The length of the shared prefix used and its cache (batch 1), memoised. At least
        ``keep`` tokens of every row stay outside the prefix (their logits are wanted)."""
        shared = min(common_prefix_length(token_lists), min(len(t) for t in token_lists) - keep)
        if self._prefix is not None:
            tokens, cache = self._prefix
            n = len(tokens)
            if n <= shared and all(tuple(t[:n]) == tokens for t in token_lists):
                return n, cache
        if shared < MIN_SHARED_PREFIX:
            return 0, None
        self.set_shared_prefix(token_lists[0][:shared])
        assert self._prefix is not None
        return shared, self._prefix[1]

    def _prefill(self, token_lists: Sequence[Sequence[int]], keep: int = 1):
        """Run the prompts (after their shared prefix) in one batch.

        Layout per row: ``[shared prefix][left padding][rest of the prompt]``; the padding is
        masked and positions continue from the prefix, so every row's last column is its
        answer position. Returns (last logits [B, V], cache, attention mask, next positions);
        with ``keep > 1`` the logits of the last ``keep`` columns, [B, keep, V].
        """
        torch = self._torch
        from transformers import DynamicCache

        n_prefix, prefix_cache = self._prefix_cache(token_lists, keep)
        rows = len(token_lists)
        suffixes = [list(t[n_prefix:]) for t in token_lists]
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((rows, width), pad, dtype=torch.long)
        suffix_mask = torch.zeros((rows, width), dtype=torch.long)
        for r, suffix in enumerate(suffixes):
            input_ids[r, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            suffix_mask[r, width - len(suffix) :] = 1
        positions = (n_prefix + suffix_mask.cumsum(-1) - 1).clamp(min=n_prefix)
        attention = torch.cat([torch.ones((rows, n_prefix), dtype=torch.long), suffix_mask], dim=1)
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(rows)
        else:
            cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                position_ids=positions.to(self.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=keep,
            )
        next_positions = torch.tensor(
            [n_prefix + len(s) for s in suffixes], dtype=torch.long, device=self.device
        )
        logits = out.logits[:, -1, :] if keep == 1 else out.logits[:, -keep:, :]
        return logits.float(), out.past_key_values, attention, next_positions

    # ------------------------------------------------------------------ scoring
    def next_token_logprobs(self, prompts: Sequence[str], keys: Sequence[str]):
        """Log-softmax over the vocabulary of the token after each prompt ([B, V], float32).

        Prompts are processed in batches of ``batch_size``, sharing their common prefix.
        """
        torch = self._torch
        token_lists = [self.encode(p) for p in prompts]
        for key, tokens in zip(keys, token_lists):
            self.check_length(key, len(tokens), 1)
        out = []
        for start in range(0, len(token_lists), self.batch_size):
            logits, *_ = self._prefill(token_lists[start : start + self.batch_size])
            out.append(torch.log_softmax(logits, dim=-1).cpu())
        return torch.cat(out, dim=0)

    def candidate_logprobs(
        self, prompts: Sequence[str], keys: Sequence[str], candidates: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """For each prompt, the log-probability of each candidate next token."""
        logprobs = self.next_token_logprobs(prompts, keys)
        return [[float(logprobs[i, int(t)]) for t in ids] for i, ids in enumerate(candidates)]

    def continuation_tokens(self, prompt: str, continuation: str) -> list[int]:
        """The tokens ``continuation`` adds after ``prompt``, read off the tokenisation of the
        joined text (so " sure" merges with its space as the tokenizer merges it)."""
        base = self.encode(prompt)
        full = self.encode(prompt + continuation)
        if full[: len(base)] == base and len(full) > len(base):
            return full[len(base) :]
        return self.encode(continuation)

    def continuation_logprobs(
        self,
        prompts: Sequence[str],
        keys: Sequence[str],
        continuations: Sequence[Sequence[str]],
    ) -> list[list[float]]:
        """For each prompt, the log-probability of each of its continuations: the sum of the
        continuation tokens' log-probabilities, each given the prompt and the tokens before."""
        torch = self._torch
        rows: list[tuple[int, list[int], int]] = []  # (prompt index, full tokens, n continued)
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            base = self.encode(prompt)
            for text in continuations[i]:
                added = self.continuation_tokens(prompt, text)
                if not added:
                    raise ModelError(f"{key}: continuation {text!r} has no tokens")
                self.check_length(key, len(base) + len(added), 0)
                rows.append((i, base + added, len(added)))
        scores: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            keep = max(n for _, _, n in chunk) + 1
            logits, *_ = self._prefill([tokens for _, tokens, _ in chunk], keep=keep)
            logp = torch.log_softmax(logits, dim=-1)
            for b, (i, tokens, n) in enumerate(chunk):
                targets = tokens[-n:]
                # column keep-1 predicts the token after the row; keep-1-n .. keep-2 predict
                # the n continuation tokens
                total = sum(float(logp[b, keep - 1 - n + t, targets[t]]) for t in range(n))
                scores[i].append(total)
        return scores

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        prompts: Sequence[str],
        keys: Sequence[str],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seeds: Sequence[Sequence[int]] | None = None,
        stop_at_first_line: bool = True,
        score_first: Sequence[Sequence[int]] | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per prompt; ``temperature == 0`` is greedy (then ``n`` must be 1
        or the samples are identical). ``seeds[i][k]`` seeds sample ``k`` of prompt ``i``.
        ``score_first[i]``: token ids whose log-probabilities at the first generated position
        are returned in each completion's ``first_token_logprobs``."""
        if n <= 0:
            raise ModelError(f"number of samples must be positive, got {n}")
        if temperature < 0:
            raise ModelError(f"temperature must be >= 0, got {temperature}")
        token_lists = [self.encode(p) for p in prompts]
        for key, tokens in zip(keys, token_lists):
            self.check_length(key, len(tokens), max_new_tokens)
        results: list[list[Completion]] = []
        step = self.batch_size  # prompts per batch; the batch decodes step * n rows
        for start in range(0, len(token_lists), step):
            chunk = token_lists[start : start + step]
            chunk_seeds = None if seeds is None else seeds[start : start + step]
            chunk_first = None if score_first is None else score_first[start : start + step]
            results.extend(
                self._sample_batch(
                    chunk,
                    n,
                    temperature,
                    max_new_tokens,
                    chunk_seeds,
                    stop_at_first_line,
                    chunk_first,
                )
            )
        return results

    def _sample_batch(
        self, token_lists, n, temperature, max_new_tokens, seeds, first_line, score_first=None
    ):
        torch = self._torch
        logits, cache, attention, positions = self._prefill(token_lists)
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            attention = attention.repeat_interleave(n, dim=0)
            positions = positions.repeat_interleave(n, dim=0)
        n_rows = logits.shape[0]
        generators = None
        if temperature > 0:
            generators = []
            for i in range(len(token_lists)):
                for k in range(n):
                    seed = seeds[i][k] if seeds is not None else i * n + k
                    generators.append(torch.Generator().manual_seed(int(seed)))
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        logprobs: list[list[float]] = [[] for _ in range(n_rows)]
        finished_by = ["length"] * n_rows
        first_scores: list[list[float] | None] = [None] * n_rows
        active = list(range(n_rows))  # row index of each batch position
        for step in range(max_new_tokens):
            model_logp = torch.log_softmax(logits, dim=-1)
            if step == 0 and score_first is not None:
                for row in range(n_rows):
                    ids = [int(t) for t in score_first[row // n]]
                    first_scores[row] = model_logp[row, ids].tolist()
            if temperature > 0:
                sample_probs = torch.softmax(logits / temperature, dim=-1).cpu()
                chosen = [
                    int(torch.multinomial(sample_probs[b], 1, generator=generators[row]))
                    for b, row in enumerate(active)
                ]
            else:
                chosen = model_logp.argmax(dim=-1).tolist()
            chosen_logp = model_logp[torch.arange(len(active)), torch.tensor(chosen)].tolist()
            keep: list[int] = []
            for b, row in enumerate(active):
                token = chosen[b]
                if token in self.eos_ids:
                    finished_by[row] = "eos"
                    continue
                tokens[row].append(token)
                logprobs[row].append(chosen_logp[b])
                if (
                    first_line
                    and self._ends_line(token)
                    and ends_first_line(self.tokenizer, tokens[row])
                ):
                    finished_by[row] = "newline"
                    continue
                keep.append(b)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                cache.batch_select_indices(index)
                attention = attention[keep]
                positions = positions[index]
                active = [active[b] for b in keep]
                chosen = [chosen[b] for b in keep]
            attention = torch.cat(
                [attention, torch.ones((len(active), 1), dtype=torch.long)], dim=1
            )
            step_ids = torch.tensor(chosen, dtype=torch.long, device=self.device)[:, None]
            with torch.inference_mode():
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=attention.to(self.device),
                    position_ids=positions[:, None],
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()
            positions = positions + 1
        completions = []
        for row in range(n_rows):
            text = self.tokenizer.decode(tokens[row], skip_special_tokens=True)
            completions.append(
                Completion(text, tokens[row], logprobs[row], finished_by[row], first_scores[row])
            )
        return [completions[i * n : (i + 1) * n] for i in range(len(token_lists))]
