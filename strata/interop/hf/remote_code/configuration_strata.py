"""The configuration of a model strata exported as a Hugging Face repository with
custom code (`strata export --to hf` of a spec that is no transformers family).

Copied into the exported folder with one line added (the hash of the
strata_model.py it goes with); nothing in it comes from a spec.  The
spec's variables are `strata_variables` in config.json: the generated
`strata_model.Config` fields, which `build(**strata_variables)` applies.
"""

from transformers import PretrainedConfig


class StrataConfig(PretrainedConfig):
    model_type = "strata"

    def __init__(self, strata_variables=None, strata_outputs=None, num_hidden_layers=0, **kwargs):
        self.strata_variables = dict(strata_variables or {})
        self.strata_outputs = list(strata_outputs or ["output"])
        # the self-attentions a generation cache holds, one DynamicCache layer each
        # (0: transformers' DynamicCache adds layers as the model calls them)
        self.num_hidden_layers = int(num_hidden_layers)
        super().__init__(**kwargs)
