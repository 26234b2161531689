"""A model strata exported as a Hugging Face repository with custom code: the
readable PyTorch module `strata compile` writes (strata_model.py, torch alone)
wrapped as a `PreTrainedModel`, so

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)   # an LM head
    AutoModel.from_pretrained(folder, trust_remote_code=True)              # any other head

load it and `generate()` works.  Copied verbatim into the exported folder;
nothing in it comes from a spec.  The weights are the generated module's state
dict under `model.`.
"""

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, ModelOutput

from .configuration_strata import StrataConfig
from .strata_model import build


class StrataPreTrainedModel(PreTrainedModel):
    config_class = StrataConfig
    base_model_prefix = "model"
    _no_split_modules = []

    def __init__(self, config):
        super().__init__(config)
        self.model = build(**config.strata_variables)
        self.post_init()

    def _init_weights(self, module):
        pass  # the generated module initialises itself; from_pretrained then loads every weight


class StrataModel(StrataPreTrainedModel):
    """Every output of the spec (its head and branches), by name."""

    def forward(self, input_ids, *inputs, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("attention_mask", "return_dict")}
        return ModelOutput(self.model(input_ids, *inputs, return_dict=True, **kwargs))


class _CacheView:
    """strata's cache calls on a transformers Cache (DynamicCache): the generated
    model calls start() at each forward (how many positions are cached) and
    update(k, v) once per self-attention in call order, k / v (B, kv_heads, T,
    head_dim); the i-th update of a forward is layer i."""

    def __init__(self, cache):
        self.cache, self.index = cache, 0

    def start(self):
        self.index = 0
        return self.cache.get_seq_length()

    def update(self, k, v):
        k, v = self.cache.update(k, v, self.index)
        self.index += 1
        return k, v


class StrataForCausalLM(StrataPreTrainedModel, GenerationMixin):
    """A causal LM: logits (B, T, vocab).  generate() keeps the keys and values
    in a transformers DynamicCache (given as `cache`, or `past_key_values` by
    older callers) and feeds only the new tokens, where the generated module
    has a cache (`new_cache`); else it recomputes the whole sequence each step."""

    def _cached(self):
        return hasattr(self.model, "new_cache")

    def forward(self, input_ids=None, attention_mask=None, labels=None, cache=None, use_cache=None, **kwargs):
        cache = cache if cache is not None else kwargs.get("past_key_values")
        if cache is not None and use_cache is not False and self._cached():
            logits = self.model(input_ids, cache=_CacheView(cache), return_dict=True)["output"]
        else:
            logits, cache = self.model(input_ids, return_dict=True)["output"], None
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)

    def _supports_default_dynamic_cache(self):
        return self._cached()  # generate() makes a DynamicCache only for a module that can use one

    def prepare_inputs_for_generation(self, input_ids, cache=None, past_key_values=None, **kwargs):
        cache = cache if cache is not None else past_key_values
        if cache is None or not self._cached():
            return {"input_ids": input_ids}
        return {"input_ids": input_ids[:, cache.get_seq_length():], "cache": cache, "use_cache": True}
