"""The masked-diffusion transformer (LLaDA, and Dream as a config of the same class) in Flax
NNX, its configs and its sharding."""

from lookum_jax.model.config import ModelConfig, llada_8b, tiny
from lookum_jax.model.llada import LLaDA, abstract_model, init_model, scan_model
from lookum_jax.model.sharding import make_mesh, shard_batch, shard_model, sharding_rules

__all__ = ["LLaDA", "ModelConfig", "abstract_model", "init_model", "llada_8b", "make_mesh",
           "scan_model", "shard_batch", "shard_model", "sharding_rules", "tiny"]
