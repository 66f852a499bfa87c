"""`lipsync bench` (``bench``, ``bench_report``, ``host``) and `lipsync doctor` (``doctor``)."""
