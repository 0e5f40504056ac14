"""What a run of the workload leaves behind, wherever it ran: the precision hook's flags (``hook``,
``sitecustomize``), its output files' fingerprints and numeric differences (``outputs``), and the
native run on the host that ``envcap snapshot --outputs ... -- CMD`` records (``native``)."""
