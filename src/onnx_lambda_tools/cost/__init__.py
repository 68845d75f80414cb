"""The cost model: what the deployed stack costs a month, and against SageMaker, from measured latency.

``prices.json`` holds every price (with source and date); :mod:`.measurements` reads the handler
timings; :mod:`.model` turns a :class:`~.model.Scenario` into line items; :mod:`.memory_advice` and
:mod:`.report` write docs/cost.md; :mod:`.command` is ``onnx-lambda cost``.
"""
