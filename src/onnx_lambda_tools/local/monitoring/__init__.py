"""CloudWatch's view of the API Gateway + Lambda emulator: the template's dashboard and alarms, on a laptop.

``onnx-lambda serve --lambda`` records, for every request and invocation, the metrics API Gateway and
Lambda would publish, and reads the function's own EMF lines from its log streams. The dashboard and the
alarms are the ones ``template.yaml`` declares, resolved for the local stack, and they are served on a
loopback port of their own (docs/emulator.md, "Metrics, alarms and the dashboard"):

* :mod:`.metrics`: the store (CloudWatch's data model, a bounded window in memory), statistics, time scale;
* :mod:`.emf`: the embedded metric format, read from the function's log streams;
* :mod:`.recorder`: the emulator's requests and invocations as API Gateway's and Lambda's metrics;
* :mod:`.template`: the ``DashboardBody`` and the alarms from the template, resolved for the local stack;
* :mod:`.search`: the ``SEARCH()`` expressions the dashboard uses;
* :mod:`.dashboard`: each widget's series; :mod:`.alarms`: each alarm's state, by its own rule;
* :mod:`.server`: the monitoring port (the page, the JSON, the fault switch).
"""
