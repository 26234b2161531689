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
from transformers.modeling_outputs import CausalLMOutput, ModelOutput

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


class StrataForCausalLM(StrataPreTrainedModel, GenerationMixin):
    """A causal LM: logits (B, T, vocab).  generate() recomputes the whole
    sequence at each step (no Hugging Face cache object is kept)."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        logits = self.model(input_ids, return_dict=True)["output"]
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    @classmethod
    def _supports_default_dynamic_cache(cls):
        return False  # generate() keeps no Hugging Face cache for this model

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}
