"""The run directory: its file names (:mod:`.layout`), what a path a user gives stands for
(:mod:`.resolve`, :mod:`.load`), what collection hands over (:mod:`.recording`), and finishing a run
(:mod:`.finish`: analyse, write ``analysis.json`` and ``report.md``, rank 0's job view).

The modules sit at different stages (docs/architecture.md): the layout, the recording and the resolver
import nothing but the base stage, so the trace reader and collection use them; loading a document
needs the analysis, and finishing a run needs the analysis and the report. This file imports nothing.
"""
