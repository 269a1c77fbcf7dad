"""``perfkit scale MODULE:FUNCTION --sizes ...``: the scaling probe (being written)."""
