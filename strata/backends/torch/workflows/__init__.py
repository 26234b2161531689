"""Workflows on compiled models: what runs a model the backend built, as
opposed to the torch-free graph rewrites of strata/passes/.

    compress.py     strata compress: weights through the passes, written as a folder
    calibration.py  calibration data, and the runs that measure activations for passes
    stream.py       calibration streamed block by block (GPTQ, AWQ, SparseGPT)
    adapters.py     LoRA adapters on a compiled model: trainable set, save, load, merge
    qat.py          quantization-aware training (torchao): prepare and convert
    training.py     what a spec's passes ask of training (strata train calls it)

Passes never import this package: calibration statistics reach them through
`strata.passes.PassContext` (its `runner`).
"""
