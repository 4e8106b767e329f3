"""What the tests and the benchmarks share.

Only the standard library and the package are imported here, so that ``benchmarks/launcher.py``
can import :mod:`tests.support.processes` and stay small.

- :mod:`~tests.support.messages`: Singer message builders and readers;
- :mod:`~tests.support.config`: the one target config builder (the exported demo credentials);
- :mod:`~tests.support.processes`: a child process watched from threads (output stamped as it
  comes, peak memory, CPU, signals, bounded waits);
- :mod:`~tests.support.targets`: ``target-rjmetrics`` as a process (run to the end, or live) and
  in this process;
- :mod:`~tests.support.servers`: the local Import API in this process and as a process;
- :mod:`~tests.support.api`: a small HTTP client of one local server, for the local server's tests;
- :mod:`~tests.support.scripted`: a hand-written loopback HTTP server for answers the local
  server cannot give;
- :mod:`~tests.support.expected`: what should land, computed from the input without the target;
- :mod:`~tests.support.checks`: what did land, STATE checked against the request log, output checks;
- :mod:`~tests.support.real_taps`: real taps from PyPI, each in its own virtualenv;
- :mod:`~tests.support.locks`: the committed locks and the pinned uv, for every install a test makes.
"""
