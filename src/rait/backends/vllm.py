"""The vLLM backend (optional): automatic prefix caching, ``n`` samples per request, and exact
option-letter log-probabilities.

vLLM is imported only when this backend is used. Option letters are scored through
``prompt_logprobs``: for each option the prompt is extended by the letter's token and vLLM
returns that token's log-probability under the model (log-softmax over the full vocabulary),
the same quantity as the Hugging Face backend's; prefix caching makes the extra requests
cheap. Sampling uses ``SamplingParams(n=..., temperature=..., top_p=1, top_k=0, seed=...)``
with ``stop=["\\n"]`` for first-line answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from rait.engine import Completion
from rait.errors import ModelError
from rait.generation import check_context
from rait.models import ModelConfig, resolve_model_source, use_chat_template


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        model_cfg: ModelConfig,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
    ):
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - resolve_backend checks first
            raise ModelError(f"backend 'vllm' needs the vllm package: {exc}") from None
        self._vllm = vllm
        source, gguf_file = resolve_model_source(model_cfg)
        if gguf_file:
            raise ModelError("the vLLM backend needs a safetensors model, not a GGUF file")
        dtype = "auto" if model_cfg.dtype == "auto" else model_cfg.dtype
        lora: dict = {}
        self.lora_request = None
        if model_cfg.adapter:
            import json
            from pathlib import Path

            from vllm.lora.request import LoRARequest

            config_file = Path(model_cfg.adapter) / "adapter_config.json"
            try:
                rank = int(json.loads(config_file.read_text(encoding="utf-8")).get("r", 16))
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                raise ModelError(f"cannot read the adapter's {config_file}: {exc}") from None
            lora = {"enable_lora": True, "max_lora_rank": rank}
            self.lora_request = LoRARequest("rait", 1, model_cfg.adapter)
        try:
            self.llm = vllm.LLM(
                model=source,
                revision=model_cfg.revision,
                dtype=dtype,
                trust_remote_code=model_cfg.trust_remote_code,
                enable_prefix_caching=True,
                tensor_parallel_size=tensor_parallel_size,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                **lora,
            )
        except Exception as exc:
            raise ModelError(f"vLLM cannot load model {model_cfg.name!r}: {exc}") from None
        self.tokenizer = self.llm.get_tokenizer()
        self.chat = use_chat_template(self.tokenizer, model_cfg.chat_template, model_cfg.name)
        self.model_name = model_cfg.name
        self.limit = getattr(self.llm.llm_engine.model_config, "max_model_len", None)

    def _generate(self, requests, params):
        if self.lora_request is None:
            return self.llm.generate(requests, params, use_tqdm=False)
        return self.llm.generate(requests, params, use_tqdm=False, lora_request=self.lora_request)

    def encode(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def check_length(self, key: str, n_tokens: int, new_tokens: int) -> None:
        check_context(self.model_name, key, n_tokens, new_tokens, self.limit)

    def set_shared_prefix(self, tokens: Sequence[int]) -> None:
        """vLLM finds shared prefixes itself (automatic prefix caching)."""

    def candidate_logprobs(
        self, prompts: Sequence[str], keys: Sequence[str], candidates: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        requests, index = [], []
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            ids = self.encode(prompt)
            self.check_length(key, len(ids), 1)
            for token in candidates[i]:
                requests.append({"prompt_token_ids": [*ids, int(token)]})
                index.append(i)
        outputs = self._generate(requests, params)
        result: list[list[float]] = [[] for _ in prompts]
        for i, out in zip(index, outputs):
            last = out.prompt_logprobs[-1]
            token = out.prompt_token_ids[-1]
            result[i].append(float(last[token].logprob))
        return result

    def continuation_logprobs(
        self,
        prompts: Sequence[str],
        keys: Sequence[str],
        continuations: Sequence[Sequence[str]],
    ) -> list[list[float]]:
        """For each prompt, the summed log-probability of each continuation's tokens
        (``prompt_logprobs`` of the joined sequence)."""
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        requests, index = [], []
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            base = self.encode(prompt)
            for text in continuations[i]:
                full = self.encode(prompt + text)
                added = full[len(base) :] if full[: len(base)] == base else self.encode(text)
                if not added:
                    raise ModelError(f"{key}: continuation {text!r} has no tokens")
                self.check_length(key, len(base) + len(added), 1)
                requests.append({"prompt_token_ids": [*base, *added]})
                index.append((i, len(added)))
        outputs = self._generate(requests, params)
        result: list[list[float]] = [[] for _ in prompts]
        for (i, n), out in zip(index, outputs):
            ids = out.prompt_token_ids
            entries = out.prompt_logprobs
            result[i].append(
                sum(float(entries[t][ids[t]].logprob) for t in range(len(ids) - n, len(ids)))
            )
        return result

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
        first = None
        if score_first is not None:  # extra requests, cheap with prefix caching
            first = self.candidate_logprobs(prompts, keys, score_first)
        requests, params = [], []
        for i, (prompt, key) in enumerate(zip(prompts, keys)):
            ids = self.encode(prompt)
            self.check_length(key, len(ids), max_new_tokens)
            requests.append({"prompt_token_ids": ids})
            params.append(
                self._vllm.SamplingParams(
                    n=n,
                    temperature=temperature,
                    top_p=1.0,
                    top_k=0,
                    seed=None if seeds is None or temperature == 0 else int(seeds[i][0]),
                    max_tokens=max_new_tokens,
                    stop=["\n"] if stop_at_first_line else None,
                    logprobs=0,
                )
            )
        outputs = self._generate(requests, params)
        results = []
        for i, out in enumerate(outputs):
            completions = []
            for seq in out.outputs:
                logprobs = []
                for token, entry in zip(seq.token_ids, seq.logprobs or []):
                    logprobs.append(float(entry[token].logprob))
                reason = {"stop": "newline", "length": "length"}.get(seq.finish_reason, "eos")
                if seq.finish_reason == "stop" and seq.stop_reason is None:
                    reason = "eos"
                completions.append(
                    Completion(
                        seq.text,
                        list(seq.token_ids),
                        logprobs,
                        reason,
                        None if first is None else list(first[i]),
                    )
                )
            results.append(completions)
        return results
