"""Old name of `lookum_jax.toylab`, kept only while scripts in experiments/ import it
(`open_lab` is `toylab.open_task_model`); import `lookum_jax.toylab` instead."""

from lookum_jax.toylab import TaskModel as Lab  # noqa: F401
from lookum_jax.toylab import TaskSpec, read_task_spec, write_task_spec  # noqa: F401
from lookum_jax.toylab import open_task_model as open_lab  # noqa: F401
