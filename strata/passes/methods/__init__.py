"""Calibrated compression methods, one idea per file, used by the quantize and
prune passes (apply.py): GPTQ (gptq.py), AWQ (awq.py), SmoothQuant
(smoothquant.py) and SparseGPT (sparsegpt.py), on the schemes' integer grids
(grid.py), with the calibration data streamed block by block (stream.py) and
scales folded into norms (scale_fold.py).  Written here: torchao 0.18 has GPTQ and
AWQ only for its own CUDA tensor subclasses and SmoothQuant through its
prototype observers, none of which runs on a CPU float model as a weight
transform (docs/passes.md says so).
"""
