"""Old home of `parse_key_values` (now `lookum_jax.configfile`), kept only while scripts in
experiments/ import it from here."""

from lookum_jax.configfile import parse_key_values  # noqa: F401
