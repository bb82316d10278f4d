"""Bridges to the tools researchers already use; each needs its optional extra.

`lookum_jax.integrations.lm_eval` registers the `lookum` model with EleutherAI's
lm-evaluation-harness (`pip install "lookum-jax[lm-eval]"`). Nothing here is imported by
the library itself.
"""
