"""The configuration of a model strata exported as a Hugging Face repository with
custom code (`strata export --to hf` of a spec that is no transformers family).

Copied verbatim into the exported folder; nothing in it comes from a spec.  The
spec's variables are `strata_variables` in config.json: the generated
`strata_model.Config` fields, which `build(**strata_variables)` applies.
"""

from transformers import PretrainedConfig


class StrataConfig(PretrainedConfig):
    model_type = "strata"

    def __init__(self, strata_variables=None, strata_outputs=None, **kwargs):
        self.strata_variables = dict(strata_variables or {})
        self.strata_outputs = list(strata_outputs or ["output"])
        super().__init__(**kwargs)
