"""The pre-registered campaign: the paper's tables at a real budget, stage by stage.

A committed plan (:mod:`.plan`) fixes every stage's cells, seeds, budgets and
decision rule (:mod:`.rules`) before any of its runs; a registration
(:mod:`.registry`) ties the plan and the code to what may run; one command
(:mod:`.cli`) advances the campaign within a time budget, several cells at
once on one device (:mod:`.scheduler`), never rerunning a finished cell, and
writes a report (:mod:`.report`) of how far each stage is and what the
finished ones decided.
"""
