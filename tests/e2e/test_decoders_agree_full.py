"""tests/unit/test_decoders_agree.py's generated and byte-damaged events with every hypothesis example (the
unit suite runs fewer, with the same strategies and checks)."""

from __future__ import annotations

from ..unit import test_decoders_agree as unit


@unit.examples(unit.GENERATED_EXAMPLES)
@unit.GENERATED
def test_all_generated_events_decode_alike(items, sep):
    unit.generated_events_decode_alike(items, sep)


@unit.examples(unit.MUTATED_EXAMPLES)
@unit.MUTATED
def test_all_mutated_events_decode_alike(items, data):
    unit.mutated_events_decode_alike(items, data)


test_all_generated_events_decode_alike.split_of = unit.test_generated_events_decode_alike
test_all_mutated_events_decode_alike.split_of = unit.test_mutated_events_decode_alike
